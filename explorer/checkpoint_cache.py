"""Computations on a checkpoint, cached for the whole server. A model object cannot be
hashed and is shared between sessions, so the cache key is its weights file's stamp
(path, mtime, size) instead: a checkpoint rewritten by training is computed afresh."""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import streamlit as st

from explorer.paths import FileStamp
from lm.checkpoint import WEIGHTS_FILE, Checkpoint

Result = TypeVar("Result")


def cached_on_checkpoint(
    *, max_entries: int, spinner: str | bool = False
) -> Callable[[Callable[..., Result]], Callable[..., Result | None]]:
    """Decorate `compute(checkpoint, *args)` (args hashable) to run once per weights version
    and args. The decorated call shows an error and returns None when the weights are gone."""

    def decorate(compute: Callable[..., Result]) -> Callable[..., Result | None]:
        def cached(stamp: FileStamp, args: tuple, _checkpoint: Checkpoint) -> Result:
            return compute(_checkpoint, *args)

        # streamlit keeps one cache per module and name: without these, every computation would share one
        cached.__module__, cached.__qualname__ = compute.__module__, compute.__qualname__
        cached = st.cache_data(max_entries=max_entries, show_spinner=spinner)(cached)

        @functools.wraps(compute)
        def call(checkpoint: Checkpoint, *args) -> Result | None:
            try:
                stamp = FileStamp.of(checkpoint.path / WEIGHTS_FILE)
            except OSError:
                st.error(f"{checkpoint.path.name} has disappeared from disk; choose another model.")
                return None
            return cached(stamp, args, checkpoint)

        return call

    return decorate
