"""The Inside the model page's pure builders: figures and HTML from plain data, read back without a server."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.inside_charts import (
    attribution_figure, embedding_figure, head_patching_figure, lens_figure, residual_patching_figure,
)
from explorer.inside_tabs.embeddings import search
from explorer.neuron_snippets import snippet_html
from lm.embedding_map import EmbeddingMap
from lm.lens import Attribution, LogitLens
from lm.patching import Patching

LABELS = ("a", "<b>", "a", "c")
NAMES = {0: "x", 1: "y", 2: "z", 3: "<w>", 4: "<|endoftext|>"}


def lens() -> LogitLens:
    top_ids = np.tile(np.arange(5), (3, 4, 1))
    top_ids[0, :, 0] = 4  # the embeddings' guess is not the final one
    probs = np.tile(np.array([0.5, 0.2, 0.1, 0.1, 0.1]), (3, 4, 1))
    return LogitLens(("embeddings", "block 0", "block 1"), top_ids, probs, np.zeros(4, dtype=int),
                     np.array([[0.1] * 4, [0.4] * 4, [0.5] * 4]))


def test_lens_figure_colours_by_the_final_guess_and_names_the_top_five():
    fig = lens_figure(lens(), LABELS, NAMES.__getitem__, "t", marked_row=2, mark_label="induction head L1 H0")
    heatmap = fig.data[0]
    np.testing.assert_allclose(np.asarray(heatmap.z), lens().final_probs)
    assert list(heatmap.x) == ["#0 a", "#1 &lt;b&gt;", "#2 a", "#3 c"]  # one column per position, escaped
    assert heatmap.text[0][0] == "&lt;|en…" and heatmap.text[2][3] == "x"  # each cell's own top guess, cut to fit
    hover = heatmap.hovertext[1][1]
    assert hover.startswith("after block 0, at #1 &lt;b&gt;") and "&lt;w&gt;  10.0%" in hover and "x  50.0%" in hover
    assert fig.layout.shapes[0].y0 == 1.5 and fig.layout.shapes[0].y1 == 2.5
    tag = fig.layout.annotations[0]
    assert tag.text == "induction head L1 H0" and (tag.x, tag.y) == (3.5, 1.5)  # on the outline's top right corner


def test_lens_cells_stop_naming_guesses_on_long_texts():
    wide = LogitLens(("embeddings",), np.zeros((1, 40, 5), dtype=int), np.ones((1, 40, 5)) / 5,
                     np.zeros(40, dtype=int), np.ones((1, 40)))
    assert lens_figure(wide, ("t",) * 40, NAMES.__getitem__, "t").data[0].text is None


def test_attribution_figure_keeps_the_models_order_and_every_value():
    found = Attribution(("embeddings", "L0 H0", "L0 H1", "L0 attn bias", "L0 MLP", "final norm bias"),
                        ("embeddings", "head", "head", "attention bias", "MLP", "final norm bias"),
                        (None, (0, 0), (0, 1), None, None, None), np.array([1.0, -2.0, 0.5, 0.1, 3.0, 0.2]), 2.8, 0.9)
    fig = attribution_figure(found, "t")
    assert list(fig.layout.xaxis.categoryarray) == list(found.labels)
    values = {x: y for bar in fig.data for x, y in zip(bar.x, bar.y)}
    assert values == dict(zip(found.labels, found.values))
    assert [bar.name for bar in fig.data] == ["embeddings", "head", "attention bias", "MLP", "final norm bias"]
    assert found.top_heads(1) == [(0, 0, -2.0)]


def patching() -> Patching:
    residual = np.array([[0.0, 1.0, 0.2, 0.0], [0.0, 0.1, 0.3, 0.9]])
    return Patching(1, 2, 3.0, -1.0, (1,), residual, np.array([[0.1, 0.8], [0.0, -0.3]]))


def test_patching_figures_show_the_shares_and_outline_the_changed_position():
    fig = residual_patching_figure(patching(), LABELS, "t")
    np.testing.assert_allclose(np.asarray(fig.data[0].z), patching().residual)
    assert list(fig.data[0].y) == ["into block 0", "into block 1"]
    assert [(s.x0, s.x1) for s in fig.layout.shapes] == [(0.5, 1.5)]
    assert fig.data[0].zmid == 0 and fig.data[0].zmin == -fig.data[0].zmax
    heads = head_patching_figure(patching(), "t")
    np.testing.assert_allclose(np.asarray(heads.data[0].z), patching().heads)
    assert list(heads.data[0].x) == ["head 0", "head 1"]


def test_embedding_figure_draws_the_chosen_token_and_its_neighbours_on_top():
    found = EmbeddingMap(np.arange(10, dtype=float).reshape(5, 2), (0.4, 0.2))
    fig = embedding_figure(found, [0, 1, 2], NAMES.__getitem__, 3, [4, 0], "t")
    cloud, near, chosen = fig.data
    assert list(cloud.x) == [0, 2, 4] and list(cloud.text) == ["x", "y", "z"]
    assert list(near.text) == ["&lt;|endoftext|&gt;", "x"] and list(near.x) == [8, 0]
    assert list(chosen.text) == ["&lt;w&gt;"] and list(chosen.y) == [7]
    assert "40%" in fig.layout.xaxis.title.text
    assert len(embedding_figure(found, [0], NAMES.__getitem__, None, [], "t").data) == 1


def test_snippet_marks_the_firing_token_and_escapes_the_rest():
    labels = [f"t{i}" for i in range(30)] + ["<x>"]
    html = snippet_html(labels, 30, 1.5)
    assert "&lt;x&gt;</mark>" in html and "<x>" not in html
    assert html.count("<mark") == 1 and "t18" in html and "t17" not in html and "(1.50)" in html
    assert html.startswith('<div class="neuron-snippet"') and "…t18" in html
    assert snippet_html(labels[:5], 0, 0.5).count("…") == 1  # at the end only: the passage starts at its start


@pytest.mark.parametrize(("query", "first"), [("the", 2), ("·the", 2), ("TH", 1), ("e", 4)])
def test_search_ranks_the_exact_token_then_those_starting_with_the_query(query, first):
    labels = ["other", "theme", "·the", "·then", "e"]
    assert search(labels, query)[0] == first
    assert search(labels, "zzz") == []
