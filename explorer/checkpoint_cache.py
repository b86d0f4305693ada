"""Computations on a checkpoint, cached for the whole server. A model object cannot be
hashed and is shared between sessions, so the cache key is its weights file's stamp
(path, mtime, size) instead: a checkpoint rewritten by training is computed afresh.

Results are kept as objects (st.cache_resource), not pickled (st.cache_data): a rerun gets
the same object back instead of unpickling a copy, which for the Attention page's weights at
SmolLM2-135M's shape is 18 MB at 128 tokens and 71 MB at 256, on every rerun of every
student. Every session shares that object, so it is frozen before it is kept (`frozen`)."""

from __future__ import annotations

import dataclasses
import functools
import operator
from types import MappingProxyType
from typing import Any, Callable, TypeVar

import numpy as np
import streamlit as st
import torch

from explorer.paths import FileStamp
from lm.checkpoint import WEIGHTS_FILE, Checkpoint

Result = TypeVar("Result")

IMMUTABLE = (str, bytes, int, float, complex, bool, type(None), np.generic, frozenset)


def frozen(value: Any) -> Any:
    """`value` safe to share between sessions: numpy arrays made read-only (a write raises),
    lists and tuples as tuples, dicts as read-only mappings, frozen dataclasses with their
    fields frozen. Torch tensors cannot be made read-only and are kept as they are: no page
    changes one in place (tests/test_checkpoint_cache.py compares them after the pages ran).
    TypeError for anything else that could change under another session's feet."""
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
        return value
    if isinstance(value, IMMUTABLE) or isinstance(value, torch.Tensor):
        return value
    if type(value) in (list, tuple):
        items = tuple(frozen(item) for item in value)
        return value if type(value) is tuple and all(map(operator.is_, items, value)) else items
    if type(value) is dict:
        return MappingProxyType({key: frozen(item) for key, item in value.items()})
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and type(value).__dataclass_params__.frozen:
        fields = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
        changed = {name: kept for name, item in fields.items() if (kept := frozen(item)) is not item}
        return dataclasses.replace(value, **changed) if changed else value
    raise TypeError(f"a {type(value).__name__} cannot be shared between sessions unchanged; "
                    "return immutable data (a tuple, a frozen dataclass, a numpy array)")


def cached_on_checkpoint(
    *, max_entries: int, spinner: str | bool = False
) -> Callable[[Callable[..., Result]], Callable[..., Result | None]]:
    """Decorate `compute(checkpoint, *args)` (args hashable) to run once per weights version
    and args; its result is `frozen` (lists come back as tuples, dicts as read-only mappings).
    The decorated call shows an error and returns None when the weights are gone. Entries are
    kept for every session together: `max_entries` bounds the memory, not a session's share."""

    def decorate(compute: Callable[..., Result]) -> Callable[..., Result | None]:
        def cached(stamp: FileStamp, args: tuple, _checkpoint: Checkpoint) -> Result:
            return frozen(compute(_checkpoint, *args))

        # streamlit keeps one cache per module and name: without these, every computation would share one
        cached.__module__, cached.__qualname__ = compute.__module__, compute.__qualname__
        cached = st.cache_resource(max_entries=max_entries, show_spinner=spinner)(cached)

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
