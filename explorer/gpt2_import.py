"""Importing a model from the app (OpenAI's GPT-2 here, open-weight models in
explorer.hf_import_jobs). A download can take minutes, so an import runs in a thread of the
server, one per model and source, shared by every session: a refresh, a second tab or a
second student sees the same import instead of starting another. The page only reads its
progress. (A thread, not a child process like training: it waits on the network and disk,
and holds the CPU for a few seconds of copying at the end.)"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from lm.gpt2 import SIZES, import_gpt2

Progress = Callable[[int, int], None]  # (bytes done, bytes in all), called from the importing thread


@dataclass
class ImportJob:
    key: tuple  # (kind, what, source): ("gpt2", size, path or None), ("hf", model, path or None)
    label: str  # what is imported, in words
    work: Callable[[Progress], Path] = field(repr=False)  # the import itself; returns the checkpoint folder
    done_bytes: int = 0
    total_bytes: int = 0
    folder: Path | None = None  # the checkpoint, once written
    error: str | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def downloads(self) -> bool:
        return self.key[-1] is None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def report(self, done: int, total: int) -> None:
        """Download progress, called from the downloading thread."""
        self.done_bytes, self.total_bytes = done, total

    def progress(self) -> tuple[float, str]:
        """How far it is (0 to 1) and what it is doing, in words."""
        if self.total_bytes and self.done_bytes < self.total_bytes:
            return (self.done_bytes / self.total_bytes,
                    f"Downloading {self.label}: {self.done_bytes / 1e6:,.0f} of {self.total_bytes / 1e6:,.0f} MB")
        if self.downloads and not self.total_bytes:
            return 0.0, f"Looking for {self.label} in the Hugging Face cache, or contacting Hugging Face…"
        return 1.0, f"Copying {self.label}'s weights into the model and writing the checkpoint…"


@st.cache_resource
def _jobs() -> dict[tuple, ImportJob]:
    """Every import this server has started, by key."""
    return {}


_lock = threading.Lock()


def start_job(key: tuple, label: str, work: Callable[[Progress], Path]) -> ImportJob:
    """Start an import, or return the same import if it is already running."""
    with _lock:
        job = _jobs().get(key)
        if job is None or not job.running:
            job = _jobs()[key] = ImportJob(key, label, work)
            job.thread = threading.Thread(target=_run, args=(job,), name=f"import-{'-'.join(map(str, key[:2]))}",
                                          daemon=True)
            job.thread.start()
    return job


def start_import(size: str, source: str | None = None) -> ImportJob:
    """Import GPT-2 of this size, downloaded, or from a local file (which says its own size)."""
    label = SIZES[size].label if source is None else "GPT-2"
    return start_job(("gpt2", size, source), label, lambda report: import_gpt2(size, source, progress=report))


def find_import(key: tuple) -> ImportJob | None:
    return _jobs().get(key)


def running_imports(kind: str) -> list[ImportJob]:
    return [job for job in list(_jobs().values()) if job.key[0] == kind and job.running]


def _run(job: ImportJob) -> None:
    try:
        job.folder = job.work(job.report)
    except (ValueError, OSError) as exc:  # GPT2ImportError, HFImportError, TokenizerError, a full disk: all said in words
        job.error = str(exc)
    except Exception as exc:  # a thread's exception would go nowhere: show it on the page instead
        job.error = f"the import failed unexpectedly ({type(exc).__name__}: {exc})"
