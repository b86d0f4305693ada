"""Home's picture: the sharpest head is the one with the least spread-out attention, and the
Home page draws the demo model's map of that head, linked to the Attention page."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import numpy as np

from explorer.attention_view import run_attention
from explorer.home_picture import LINE, sharpest_head
from lm.checkpoint import load_checkpoint
from tests.conftest import REPO, open_page


def uniform(T: int) -> np.ndarray:
    return np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]


def test_the_sharpest_head_is_the_one_that_looks_at_one_token():
    T = 6
    weights = np.stack([np.stack([uniform(T)] * 3)] * 2)  # [layers 2, heads 3, T, T]
    weights[1, 2] = np.eye(T)  # every token looks only at itself
    weights[0, 1] = 0.9 * np.eye(T) + 0.1 * uniform(T)  # nearly as sharp
    assert sharpest_head(weights) == (1, 2)


def test_home_draws_the_demo_models_sharpest_head_on_the_line(app_dirs, monkeypatch):
    monkeypatch.setenv("LM_BUNDLED_MODELS", str(REPO / "models"))
    at = open_page("app.py")  # Home is the default page (its links need the navigation)
    demo = load_checkpoint(REPO / "models" / "shakespeare-demo")
    ids = demo.tokenizer.encode(LINE)
    layer, head = sharpest_head(run_attention(demo.model, demo.tokenizer, ids).weights)
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) == 1
    figure = charts[0]
    assert figure["layout"]["title"]["text"] == f"shakespeare-demo: layer {layer}, head {head}"
    assert figure["data"][0]["z"]["shape"] == f"{len(ids)}, {len(ids)}"  # every token of the line, one row each
    link = next(p for p in at.get("page_link") if "Attention page" in p.proto.label)
    query = parse_qs(link.proto.query_string)
    assert query == {"model": ["shakespeare-demo"], "att_text": [LINE], "att_layer": [str(layer)], "att_head": [str(head)]}
