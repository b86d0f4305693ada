"""The Attention page's parts on their own: the checkpoint cache, and each tab drawn from an
AttentionView built here, with no page around it (so no layer or head widget chooses for it)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer.attention_tabs.view import ModelRun, shared_shape
from explorer.checkpoint_cache import cached_on_checkpoint
from explorer.paths import FileStamp
from tests.checkpoints import make_checkpoint
from tests.test_attention_page import TEXT, attention, charts, heatmap

calls = []


@cached_on_checkpoint(max_entries=4)
def doubled(checkpoint, value: int) -> int:
    calls.append(("doubled", value))
    return 2 * value


@cached_on_checkpoint(max_entries=4)
def tripled(checkpoint, value: int) -> int:
    calls.append(("tripled", value))
    return 3 * value


def weights_folder(folder: Path) -> SimpleNamespace:
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"version 1")
    return SimpleNamespace(path=folder)


def test_a_computation_runs_once_per_weights_version(tmp_path):
    calls.clear()
    checkpoint = weights_folder(tmp_path / "model")
    assert [doubled(checkpoint, 5), doubled(checkpoint, 5), doubled(checkpoint, 6)] == [10, 10, 12]
    assert calls == [("doubled", 5), ("doubled", 6)]
    assert tripled(checkpoint, 5) == 15  # another computation on the same key has its own cache

    weights = checkpoint.path / "model.safetensors"
    before = FileStamp.of(weights)
    weights.write_bytes(b"version 2, retrained")
    os.utime(weights, ns=(before.mtime_ns + 10**9, before.mtime_ns + 10**9))
    assert FileStamp.of(weights) != before
    assert doubled(checkpoint, 5) == 10
    assert calls[-1] == ("doubled", 5)  # computed again for the new weights


def test_gone_weights_give_a_message_and_no_result(tmp_path):
    def script(folder: str):
        from pathlib import Path
        from types import SimpleNamespace

        from tests.test_attention_tabs import doubled

        assert doubled(SimpleNamespace(path=Path(folder)), 1) is None

    at = AppTest.from_function(script, args=(str(tmp_path / "gone"),)).run()
    assert not at.exception, at.exception
    assert at.error[0].value == "gone has disappeared from disk; choose another model."
    with pytest.raises(OSError):
        FileStamp.of(tmp_path / "gone" / "model.safetensors")


def test_shared_shape_is_what_every_model_has():
    def model(layers: int, heads: int) -> ModelRun:
        return ModelRun(None, SimpleNamespace(weights=np.zeros((layers, heads, 3, 3))), 0)

    assert shared_shape({"big": model(3, 4), "small": model(2, 6)}) == (2, 4)


def render(folders: list[Path], renderer: str, layer: int = 0, head: int = 0, text: str = TEXT) -> AppTest:
    """A script that draws one tab (`module.function` under explorer.attention_tabs) and nothing else."""

    def script(folders: list[str], renderer: str, layer: int, head: int, text: str):
        import importlib

        from explorer.attention_tabs.inputs import read_text
        from explorer.attention_tabs.view import AttentionView
        from lm.checkpoint import load_checkpoint

        module, function = renderer.split(".")
        draw = getattr(importlib.import_module(f"explorer.attention_tabs.{module}"), function)
        draw(AttentionView(read_text([load_checkpoint(f) for f in folders], text), layer, head))

    at = AppTest.from_function(
        script, args=([str(f) for f in folders], renderer, layer, head, text), default_timeout=60
    ).run()
    assert not at.exception, at.exception
    return at


def test_the_map_shows_the_head_in_the_view(tmp_path):
    folder = make_checkpoint(tmp_path / "tiny", n_layer=2, n_head=3, n_embd=24)
    at = render([folder], "maps.render_map", layer=1, head=2)
    assert charts(at)[0]["layout"]["title"]["text"] == "tiny: layer 1, head 2"
    np.testing.assert_allclose(heatmap(at), attention(folder, TEXT, 1, 2), atol=1e-6)


def test_two_models_compared_in_the_model_view(tmp_path):
    small = make_checkpoint(tmp_path / "small")
    deep = make_checkpoint(tmp_path / "deep", n_layer=3)
    at = render([small, deep], "model.render_model_view")
    assert [h.value for h in at.subheader] == ["small", "deep"]
    blocks = [h.proto.body for h in at.get("html") if "block-diagram" in h.proto.body]
    assert "× 2 blocks" in blocks[0] and "× 3 blocks" in blocks[1]


def test_step_through_follows_the_last_token_first(tmp_path):
    folder = make_checkpoint(tmp_path / "tiny")
    at = render([folder], "step_through.render_step_through", head=1)
    T = len(at.select_slider(key="att_query").options)
    assert at.select_slider(key="att_query").value == T - 1
    np.testing.assert_allclose(at.dataframe[0].value["weight"], attention(folder, TEXT, 0, 1)[T - 1], atol=1e-6)


def test_statistics_of_a_single_token_ask_for_more(tmp_path):
    at = render([make_checkpoint(tmp_path / "tiny")], "statistics.render_statistics", text="a")
    assert "at least two tokens" in at.info[0].value and not at.dataframe
