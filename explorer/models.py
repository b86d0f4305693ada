"""Finding models on disk: every folder under the runs root that holds a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from explorer.paths import bundled_models_dir, runs_root
from lm.checkpoint import WEIGHTS_FILE, Checkpoint, has_checkpoint, load_checkpoint


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    size_bytes: int


def find_models(root: Path | None = None) -> list[ModelEntry]:
    """Checkpoint folders: the bundled demo first (the pages' default), then the runs root."""
    roots = [root] if root is not None else [bundled_models_dir(), runs_root()]
    found = []
    for folder in roots:
        if folder.is_dir():
            for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
                if has_checkpoint(sub):
                    found.append(ModelEntry(sub.name, sub, (sub / WEIGHTS_FILE).stat().st_size))
    return found


@st.cache_resource(show_spinner="Loading model…", max_entries=8)
def _load(path: str, mtime_ns: int, size: int) -> Checkpoint:
    return load_checkpoint(path)


def load_model(entry: ModelEntry) -> Checkpoint:
    """Loaded once per server and shared by every session (so never modify it): cached
    on path, modification time and size, so a checkpoint rewritten by training is re-read."""
    stat = (entry.path / WEIGHTS_FILE).stat()
    return _load(str(entry.path), stat.st_mtime_ns, stat.st_size)
