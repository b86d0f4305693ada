"""Where the app keeps what it makes, relative to the working directory unless overridden.
In classroom mode (explorer.workspace) a student's runs and tokenizers live in their own
workspace, runs_root()/_students/NAME/, and these functions answer for the person signed in."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


WORKSPACES = "_students"  # in the base runs root; no run can take this name (NAME_RE)


def base_runs_root() -> Path:
    """Training runs and imported models of this machine's user or the teacher: $LM_RUNS_DIR, default ./runs."""
    return Path(os.environ.get("LM_RUNS_DIR", "runs"))


def workspaces_root() -> Path:
    """The students' workspaces, one folder each."""
    return base_runs_root() / WORKSPACES


def runs_root() -> Path:
    """The runs of the person using the page: a student's own, else the base runs root."""
    from explorer.workspace import own_folder  # it reads the session; imported late, it imports this module

    folder = own_folder()
    return base_runs_root() if folder is None else folder / "runs"


def bundled_models_dir() -> Path:
    """Models shipped with the app (the demo): $LM_BUNDLED_MODELS, default models/ in the repository."""
    return Path(os.environ.get("LM_BUNDLED_MODELS") or Path(__file__).resolve().parents[1] / "models")


def tokenizers_dir() -> Path:
    """Tokenizers saved from the Tokenizer page: $LM_TOKENIZERS_DIR, default ./tokenizers; a student's own."""
    from explorer.workspace import own_folder

    folder = own_folder()
    return Path(os.environ.get("LM_TOKENIZERS_DIR", "tokenizers")) if folder is None else folder / "tokenizers"


def model_roots() -> list[Path]:
    """Where the model lists look: the bundled demo first (the pages' default), the base runs
    root (the teacher's models, shared with the class), and a student's own runs."""
    roots = [bundled_models_dir(), base_runs_root()]
    return roots if runs_root() == base_runs_root() else [*roots, runs_root()]


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
