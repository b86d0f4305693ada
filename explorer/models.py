"""Finding models on disk: every folder under the runs root that holds a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from explorer.paths import runs_root

CHECKPOINT_FILES = ("config.json", "model.safetensors")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    size_bytes: int


def find_models(root: Path | None = None) -> list[ModelEntry]:
    root = runs_root() if root is None else root
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if all((folder / f).is_file() for f in CHECKPOINT_FILES):
            found.append(ModelEntry(folder.name, folder, (folder / "model.safetensors").stat().st_size))
    return found
