"""Writing a file so that no reader, and no other process writing the same file, ever
sees half of it: write under a temporary name of its own beside the target, then
rename it over the target in one step (os.replace is atomic within a file system).

Temporary names are unique (two processes writing one target never share one),
start with a dot and end in TMP_SUFFIX, so readers and the run exporter pass them
by; they are removed when the writing fails. A process killed mid-write leaves the
previous file whole. Only a durable write (durable=True: the file, then its folder,
fsync'd) also survives the machine losing power; the rest may lose the newest
version, which costs a sync per write where it does not matter. Several processes that would each compute the same file (a cache
entry) take `exclusive(target)` first: one computes, the others wait and read it.
"""

from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock

TMP_SUFFIX = ".tmp"
LOCK_SUFFIX = ".lock"


def is_temporary(path: str | os.PathLike) -> bool:
    """A file being written (or left by a killed writer), not data."""
    return Path(path).suffix in (TMP_SUFFIX, LOCK_SUFFIX)


def fsync_file(path: str | os.PathLike) -> None:
    """Push a written file's data to the disk."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(folder: str | os.PathLike) -> None:
    """Push a folder's entries (files created, renamed or removed in it) to the disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """A fresh temporary path beside `target` for a writer that wants a path (torch.save,
    safetensors' save_file); it becomes `target` when the block ends, and is removed if it raises.
    The writer creates the file, so it gets the usual permissions."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        yield tmp
        if durable:
            fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(target.parent)


def write_text(target: str | os.PathLike, text: str, durable: bool = False) -> None:
    with atomic_path(target, durable) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike, data, durable: bool = False, **options) -> None:
    write_text(target, json.dumps(data, **options), durable)


@contextmanager
def exclusive(target: str | os.PathLike) -> Iterator[None]:
    """Hold `target`'s lock (TARGET.lock beside it) against every other process and thread.
    The lock file is removed while still held, so none is left behind: a waiter that then
    gets the removed file's lock sees it unlinked and takes the new one (filelock checks)."""
    lock_file = Path(f"{target}{LOCK_SUFFIX}")
    with FileLock(lock_file):
        try:
            yield
        finally:
            lock_file.unlink(missing_ok=True)
