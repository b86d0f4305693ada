"""Importing OpenAI's GPT-2 from the app. A download can take minutes, so the import runs in
a thread of the server, one per size and source, shared by every session: a refresh, a
second tab or a second student sees the same import instead of starting another. The page
only reads its progress. (A thread, not a child process like training: it waits on the
network and disk, and holds the CPU for a few seconds of copying at the end.)"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from lm.gpt2 import SIZES, import_gpt2


@dataclass
class ImportJob:
    size: str
    source: str | None  # a local file or folder; None downloads
    done_bytes: int = 0
    total_bytes: int = 0
    folder: Path | None = None  # the checkpoint, once written
    error: str | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def report(self, done: int, total: int) -> None:
        """Download progress, called from the downloading thread."""
        self.done_bytes, self.total_bytes = done, total

    def progress(self) -> tuple[float, str]:
        """How far it is (0 to 1) and what it is doing, in words."""
        label = SIZES[self.size].label if self.source is None else "GPT-2"
        if self.total_bytes and self.done_bytes < self.total_bytes:
            return (self.done_bytes / self.total_bytes,
                    f"Downloading {label}: {self.done_bytes / 1e6:,.0f} of {self.total_bytes / 1e6:,.0f} MB")
        if self.source is None and not self.total_bytes:
            return 0.0, f"Looking for {label} in the Hugging Face cache, or contacting Hugging Face…"
        return 1.0, f"Copying {label}'s weights into the model and writing the checkpoint…"


@st.cache_resource
def _jobs() -> dict[tuple[str, str | None], ImportJob]:
    """Every import this server has started, by (size, source)."""
    return {}


_lock = threading.Lock()


def start_import(size: str, source: str | None = None) -> ImportJob:
    """Start importing, or return the same import if it is already running."""
    key = (size, source)
    with _lock:
        job = _jobs().get(key)
        if job is None or not job.running:
            job = _jobs()[key] = ImportJob(size, source)
            job.thread = threading.Thread(target=_run, args=(job,), name=f"import-gpt2-{size}", daemon=True)
            job.thread.start()
    return job


def find_import(size: str, source: str | None = None) -> ImportJob | None:
    return _jobs().get((size, source))


def running_imports() -> list[ImportJob]:
    return [job for job in list(_jobs().values()) if job.running]


def _run(job: ImportJob) -> None:
    try:
        job.folder = import_gpt2(job.size, job.source, progress=job.report)
    except (ValueError, OSError) as exc:  # GPT2ImportError, TokenizerError, a full disk: all said in words
        job.error = str(exc)
    except Exception as exc:  # a thread's exception would go nowhere: show it on the page instead
        job.error = f"the import failed unexpectedly ({type(exc).__name__}: {exc})"
