"""What the benchmark scripts share: working offline from ../shared/data."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def offline_tiktoken_cache() -> None:
    """Point tiktoken at a temp copy of ../shared/data/tiktoken unless the caller chose a cache."""
    source = REPO.parent / "shared" / "data" / "tiktoken"
    if "TIKTOKEN_CACHE_DIR" not in os.environ and source.is_dir():
        tmp = tempfile.mkdtemp(prefix="tiktoken-")
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        copy = Path(tmp) / "cache"
        shutil.copytree(source, copy)
        os.environ["TIKTOKEN_CACHE_DIR"] = str(copy)
