"""The checkpoint cache shares one result object between reruns and sessions (st.cache_resource,
no unpickled copy each rerun), so what it keeps must not change: arrays are read-only, lists
and dicts immutable, and the pages that read the results (every tab of Attention and Inside the
model) leave them exactly as they were computed, torch tensors included."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from types import MappingProxyType, SimpleNamespace

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer import checkpoint_cache
from explorer.attention_view import AttentionRun, LayerSteps
from explorer.checkpoint_cache import cached_on_checkpoint, frozen
from lm import attribution_patching
from lm.embedding_map import EmbeddingMap
from lm.inspect import Prediction
from lm.lens import Attribution, LogitLens
from lm.moe import Routing
from lm.patching import Patching
from tests.checkpoints import make_checkpoint
from tests.conftest import REPO, open_page

TEXT = "To be, or not to be: that is the question."


@dataclass(frozen=True)
class Found:
    grid: np.ndarray
    names: list[str]


@cached_on_checkpoint(max_entries=2)
def computed(checkpoint, size: int) -> dict:
    return {"found": Found(np.zeros((size, size)), ["a", "b"]), "ids": [1, 2, 3]}


def test_a_rerun_gets_the_same_object_back_and_cannot_change_it(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    checkpoint = SimpleNamespace(path=tmp_path)
    first = computed(checkpoint, 3)
    assert computed(checkpoint, 3) is first  # not an unpickled copy
    assert computed(checkpoint, 4) is not first
    with pytest.raises(ValueError, match="read-only"):
        first["found"].grid[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        first["found"].grid[1:] += 1.0  # a view of it is read-only too
    with pytest.raises(TypeError):
        first["ids"] = ()
    assert first["ids"] == (1, 2, 3) and first["found"].names == ("a", "b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        first["found"].names = []


def test_what_cannot_be_frozen_is_refused():
    @dataclass
    class Open:
        values: np.ndarray

    for value in (Open(np.zeros(2)), {1, 2}, bytearray(b"x"), SimpleNamespace(a=1), (1, [2, {3}])):
        with pytest.raises(TypeError, match="cannot be shared"):
            frozen(value)
    kept = Found(np.zeros(2), ("a",))
    assert frozen(kept) is kept  # nothing to replace: the same object, its array made read-only
    assert not kept.grid.flags.writeable


def equal(a, b) -> bool:
    """Deep equality of cached results: arrays and tensors by value (NaN equal to NaN)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and equal(a.numpy(), b.numpy())
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(equal, a, b))
    if isinstance(a, MappingProxyType):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return a == b


def copied(value):
    """A deep copy (copy.deepcopy cannot copy a read-only mapping)."""
    if isinstance(value, MappingProxyType):
        return MappingProxyType({key: copied(item) for key, item in value.items()})
    return copy.deepcopy(value)


@pytest.fixture
def kept(monkeypatch):
    """Every result the checkpoint cache keeps, with a deep copy taken as it was kept."""
    results, depth = [], 0

    def recorded(value):  # frozen calls itself for what a result holds: only whole results are recorded
        nonlocal depth
        depth += 1
        try:
            value = frozen(value)
        finally:
            depth -= 1
        if depth == 0:
            results.append((value, copied(value)))
        return value

    monkeypatch.setattr(checkpoint_cache, "frozen", recorded)
    return results


def test_the_attention_page_leaves_what_it_read_unchanged(app_dirs, kept):
    make_checkpoint(app_dirs / "runs" / "moe", n_experts=4, experts_top_k=2)  # the Experts tab's tensors too
    at = open_page("app_pages/attention.py")
    at.text_area(key="att_text").set_value(TEXT).run()
    at.session_state["att_abl_heads_0"] = [1]  # Ablation: a second prediction, head 1 of layer 0 off
    for tab in [tab.label for tab in at.tabs]:
        at.session_state["att_tab"] = at.query_params["att_tab"] = tab  # the open tab is in the address
        at.run()
        assert not at.exception, (tab, at.exception)
    assert {AttentionRun, LayerSteps, Prediction, Routing, MappingProxyType} <= {type(value) for value, _ in kept}
    assert all(equal(value, before) for value, before in kept)


def test_the_inside_page_leaves_what_it_read_unchanged(app_dirs, kept, monkeypatch):
    monkeypatch.setattr(attribution_patching, "EXACT_BUDGET", 0.0)  # estimates, then the strongest cells checked
    make_checkpoint(app_dirs / "runs" / "dense", sharpen=5.0)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("app_pages/inside.py")
    at.session_state["ins_tab"] = at.query_params["ins_tab"] = "Activation patching"
    at.run()
    at.text_area(key="ins_text").set_value("Hear me speak.").run()  # prompts of one length, for patching
    at.text_area(key="ins_corrupt").set_value("Hear me speak!").run()
    for tab in ["Logit lens", "Direct logit attribution", "Activation patching", "Embeddings", "Neurons"]:
        at.session_state["ins_tab"] = at.query_params["ins_tab"] = tab  # the open tab is in the address
        at.run()
        assert not at.exception, (tab, at.exception)
    assert {LogitLens, Attribution, Patching, EmbeddingMap, MappingProxyType, tuple} <= {type(v) for v, _ in kept}
    assert all(equal(value, before) for value, before in kept)
