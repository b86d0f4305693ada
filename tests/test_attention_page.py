"""The Attention page headless (AppTest): its charts must hold the model's own attention,
computed here independently, and bad input must get a message, not a traceback."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer.attention_maps import LABELLED_SMALL
from explorer.attention_tabs import inputs
from explorer.attention_view import run_attention
from lm.attention import Probe
from lm.checkpoint import load_checkpoint
from lm.sizing import parameter_count
from tests.checkpoints import make_checkpoint
from tests.conftest import open_page

PAGE = "app_pages/attention.py"
TEXT = "To be, or not to be: that is the question."


def attention(folder: Path, text: str, layer: int, head: int) -> np.ndarray:
    """The model's weights for the text's last block_size tokens, straight from lm."""
    checkpoint = load_checkpoint(folder)
    ids = checkpoint.tokenizer.encode(text)[-checkpoint.model.config.block_size :]
    with torch.no_grad():
        return checkpoint.model(torch.tensor([ids]), probe=Probe(explain=True)).attention[layer].weights[0, head].numpy()


def as_array(value) -> np.ndarray:
    """Plotly writes numpy arrays as base64 typed arrays; lists stay lists."""
    if isinstance(value, dict):
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]).newbyteorder("<"))
        return array.reshape([int(n) for n in str(value.get("shape", len(array))).split(",")])
    return np.asarray(value, dtype=float)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def heatmap(at: AppTest, index: int = 0) -> np.ndarray:
    return as_array(charts(at)[index]["data"][0]["z"])


def show_tab(at: AppTest, tab: str) -> AppTest:
    at.session_state["att_tab"] = tab
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def runs(app_dirs):  # noqa: F811
    return app_dirs / "runs"


def test_heatmap_is_the_models_attention_for_the_chosen_head(runs):
    model = make_checkpoint(runs / "tiny", n_head=3, n_embd=24)
    at = open_page(PAGE)
    at.text_area(key="att_text").set_value(TEXT).run()
    assert not at.exception, at.exception
    n_tokens = len(load_checkpoint(model).tokenizer.encode(TEXT))
    assert f"**tiny** reads {n_tokens} tokens:" in [m.value for m in at.markdown]
    assert not at.warning
    np.testing.assert_allclose(heatmap(at), attention(model, TEXT, 0, 0), atol=1e-6)

    at.segmented_control(key="att_layer").set_value(1).run()
    at.segmented_control(key="att_head").set_value(2).run()
    chosen = heatmap(at)
    np.testing.assert_allclose(chosen, attention(model, TEXT, 1, 2), atol=1e-6)
    assert np.abs(chosen - attention(model, TEXT, 0, 0)).max() > 1e-3
    assert charts(at)[0]["layout"]["title"]["text"] == "tiny: layer 1, head 2"


def test_many_heads_are_chosen_with_a_slider(runs):
    """GPT-2 small's 12 heads would not fit as a row of buttons."""
    model = make_checkpoint(runs / "wide", n_layer=2, n_head=12, n_embd=24)
    at = open_page(PAGE)
    at.text_area(key="att_text").set_value(TEXT).run()
    assert [c.key for c in at.segmented_control if c.key in ("att_layer", "att_head")] == ["att_layer"]
    at.select_slider(key="att_head").set_value(11).run()
    assert not at.exception, at.exception
    np.testing.assert_allclose(heatmap(at), attention(model, TEXT, 0, 11), atol=1e-6)


def test_the_forward_pass_is_cached_until_the_checkpoint_changes(runs, monkeypatch):
    calls = []

    def counted(model, tokenizer, ids):
        calls.append(ids)
        return run_attention(model, tokenizer, ids)

    monkeypatch.setattr(inputs, "run_attention", counted)
    folder = make_checkpoint(runs / "tiny")
    at = open_page(PAGE)
    at.text_area(key="att_text").set_value(TEXT).run()
    at.segmented_control(key="att_head").set_value(1).run()
    show_tab(at, "Head statistics")
    assert len(calls) == 2  # the default text, then TEXT once: changing the head or the tab runs nothing

    make_checkpoint(folder, seed=7)  # training rewrote the checkpoint: a new mtime
    show_tab(at, "Attention map")
    assert len(calls) == 3
    np.testing.assert_allclose(heatmap(at), attention(folder, TEXT, 0, 1), atol=1e-6)


def test_text_longer_than_the_context_keeps_its_last_tokens(runs):
    model = make_checkpoint(runs / "tiny")  # a context of 32 tokens
    at = open_page(PAGE)
    text = at.text_area(key="att_text").value
    total = len(load_checkpoint(model).tokenizer.encode(text))
    assert total > 32
    assert at.warning[0].value == (
        f"The text is {total} tokens long; it reads at most 32 tokens at once, so only the last 32 are used."
    )
    z = heatmap(at)
    assert z.shape == (32, 32)
    np.testing.assert_allclose(z, attention(model, text, 0, 0), atol=1e-6)


def test_two_models_side_by_side_show_the_same_head(runs):
    first, second = make_checkpoint(runs / "run-start", seed=0), make_checkpoint(runs / "run-end", seed=1)
    at = open_page(PAGE)
    at.text_area(key="att_text").set_value(TEXT).run()
    at.toggle(key="att_compare").set_value(True).run()
    assert at.selectbox(key="att_model").value == "run-end" and at.selectbox(key="att_model_b").value == "run-start"
    at.segmented_control(key="att_head").set_value(1).run()
    assert not at.exception, at.exception
    titles = [c["layout"]["title"]["text"] for c in charts(at)]
    assert titles == ["run-end: layer 0, head 1", "run-start: layer 0, head 1"]
    assert "**run-end** and **run-start** read" in at.markdown[1].value  # one tokenizer: the tokens shown once
    assert sum("token-chips" in h.proto.body for h in at.get("html")) == 1
    small = slice(-LABELLED_SMALL, None)  # two maps side by side label a window of the last tokens
    np.testing.assert_allclose(heatmap(at, 0), attention(second, TEXT, 0, 1)[small, small], atol=1e-6)
    np.testing.assert_allclose(heatmap(at, 1), attention(first, TEXT, 0, 1)[small, small], atol=1e-6)

    at.selectbox(key="att_model_b").set_value("run-end").run()  # the same model twice is still two panels
    assert [c["layout"]["title"]["text"] for c in charts(at)] == [
        "run-end (first): layer 0, head 1", "run-end (second): layer 0, head 1",
    ]


def test_a_smaller_model_keeps_a_valid_layer_and_head(runs):
    make_checkpoint(runs / "a-big", n_layer=3, n_head=4)
    small = make_checkpoint(runs / "b-small", n_layer=2, n_head=2)
    at = open_page(PAGE)
    at.text_area(key="att_text").set_value(TEXT).run()
    at.segmented_control(key="att_layer").set_value(2).run()
    at.segmented_control(key="att_head").set_value(3).run()
    at.selectbox(key="att_model").set_value("b-small").run()
    assert not at.exception, at.exception
    assert (at.segmented_control(key="att_layer").value, at.segmented_control(key="att_head").value) == (1, 1)
    np.testing.assert_allclose(heatmap(at), attention(small, TEXT, 1, 1), atol=1e-6)


def test_no_model_says_how_to_get_one(runs):
    at = open_page(PAGE)
    assert "No model on disk yet" in at.info[0].value
    assert not at.get("plotly_chart") and not at.text_area


def test_unreadable_model_gets_a_message(runs):
    broken = runs / "broken"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{}")
    (broken / "model.safetensors").write_bytes(b"not weights")
    at = open_page(PAGE)
    assert "broken cannot be loaded" in at.error[0].value
    assert not at.get("plotly_chart")


def test_empty_text_asks_for_text(runs):
    make_checkpoint(runs / "tiny")
    at = open_page(PAGE)
    at.text_area(key="att_text").set_value("  \n").run()
    assert not at.exception
    assert "Type some text" in at.info[0].value
    assert not at.get("plotly_chart")


def test_all_heads_grid(runs):
    model = make_checkpoint(runs / "tiny", n_layer=3, n_head=2)
    at = open_page(PAGE)
    at.text_area(key="att_text").set_value(TEXT).run()
    at.segmented_control(key="att_layer").set_value(2).run()
    at.segmented_control(key="att_head").set_value(1).run()
    grid, chosen = charts(show_tab(at, "All heads"))
    assert len(grid["data"]) == 6
    np.testing.assert_allclose(as_array(grid["data"][2 * 2 + 1]["z"]), attention(model, TEXT, 2, 1), atol=1e-6)
    assert chosen["layout"]["title"]["text"] == "tiny: layer 2, head 1"  # the chosen head, large
    np.testing.assert_allclose(as_array(chosen["data"][0]["z"]), attention(model, TEXT, 2, 1), atol=1e-6)


def test_step_through_shows_the_real_numbers(runs):
    model = make_checkpoint(runs / "tiny")
    at = open_page(PAGE)
    at.text_area(key="att_text").set_value(TEXT).run()
    at.segmented_control(key="att_head").set_value(1).run()
    show_tab(at, "Step through one head")
    at.select_slider(key="att_query").set_value(5).run()
    table = at.dataframe[0].value
    weights = attention(model, TEXT, 0, 1)[5, :6]
    np.testing.assert_allclose(table["weight"].to_numpy(), weights, atol=1e-6)
    exps = np.exp(table["score"].to_numpy() - table["score"].max())
    np.testing.assert_allclose(exps / exps.sum(), weights, atol=1e-6)
    assert len(charts(at)) == 4  # scores, masked scores, weights, the mix of values
    assert any("matches the model's own output" in c.value for c in at.caption)


def test_head_statistics_table(runs):
    model = make_checkpoint(runs / "tiny")
    at = open_page(PAGE)
    at.text_area(key="att_text").set_value(TEXT).run()
    table = show_tab(at, "Head statistics").dataframe[0].value
    assert table[["layer", "head"]].values.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    w = attention(model, TEXT, 1, 0)
    assert table.loc[2, "previous token"] == pytest.approx(np.diagonal(w, -1).mean(), abs=1e-6)
    assert table.loc[2, "itself"] == pytest.approx(np.diagonal(w)[1:].mean(), abs=1e-6)


def test_head_statistics_need_two_tokens(runs):
    make_checkpoint(runs / "tiny")
    at = open_page(PAGE)
    at.text_area(key="att_text").set_value("a").run()
    show_tab(at, "Head statistics")
    assert "at least two tokens" in at.info[0].value


def test_model_view(runs):
    model = make_checkpoint(runs / "tiny")
    at = show_tab(open_page(PAGE), "Model view")
    metrics = {m.label: m.value for m in at.metric}
    count = parameter_count(load_checkpoint(model).model.config)
    assert metrics["Parameters"] == f"{count / 1e3:.3g} k"
    bars = charts(at)[0]["data"][0]
    assert sum(as_array(bars["x"])) == count
    assert any("block-diagram" in h.proto.body and "× 2 blocks" in h.proto.body for h in at.get("html"))
