"""Where the app keeps what it makes, relative to the working directory unless overridden."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def runs_root() -> Path:
    """Training runs and imported models: $LM_RUNS_DIR, default ./runs."""
    return Path(os.environ.get("LM_RUNS_DIR", "runs"))


def bundled_models_dir() -> Path:
    """Models shipped with the app (the demo): $LM_BUNDLED_MODELS, default models/ in the repository."""
    return Path(os.environ.get("LM_BUNDLED_MODELS") or Path(__file__).resolve().parents[1] / "models")


def tokenizers_dir() -> Path:
    """Tokenizers saved from the Tokenizer page: $LM_TOKENIZERS_DIR, default ./tokenizers."""
    return Path(os.environ.get("LM_TOKENIZERS_DIR", "tokenizers"))


def check_name(name: str) -> str:
    """A file or folder name a user typed; refused unless it stays inside its folder."""
    if not NAME_RE.fullmatch(name) or ".." in name:
        raise ValueError(
            "use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit (no slashes)"
        )
    return name


@dataclass(frozen=True)
class FileStamp:
    """A file's version: it changes whenever the file is rewritten."""

    path: str
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, path: str | os.PathLike) -> FileStamp:
        """OSError if the file is gone."""
        stat = Path(path).stat()
        return cls(str(path), stat.st_mtime_ns, stat.st_size)
