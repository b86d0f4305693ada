"""Finding models on disk: every folder under the runs root that holds a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from explorer.paths import FileStamp, model_roots
from lm.checkpoint import WEIGHTS_FILE, Checkpoint, has_checkpoint, load_checkpoint


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    size_bytes: int


def find_models(root: Path | None = None) -> list[ModelEntry]:
    """Checkpoint folders: the bundled demo first (the pages' default), then the runs roots (explorer.paths.model_roots)."""
    roots = [root] if root is not None else model_roots()
    found = []
    for folder in roots:
        if folder.is_dir():
            for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
                if has_checkpoint(sub):
                    found.append(ModelEntry(sub.name, sub, (sub / WEIGHTS_FILE).stat().st_size))
    return found


@st.cache_resource(show_spinner="Loading model…", max_entries=8)
def _load(folder: str, weights: FileStamp) -> Checkpoint:
    return load_checkpoint(folder)


def load_model(entry: ModelEntry) -> Checkpoint:
    """Loaded once per server and shared by every session (so never modify it): cached on
    the weights file's stamp, so a checkpoint rewritten by training is re-read."""
    return _load(str(entry.path), FileStamp.of(entry.path / WEIGHTS_FILE))
