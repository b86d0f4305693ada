"""A mixture of experts in the app: the Attention page's Experts tab (AppTest), shown for such a
model only and drawing the model's own routing (computed here through lm.moe), and the Train
page's balance-loss curve, and the Model view's experts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.architecture_text import why
from explorer.expert_charts import choices_text
from explorer.model_view import architecture_rows, mlp_box, si, size_estimates
from explorer.training_view import balance_figure, has_balance_loss
from lm.checkpoint import load_checkpoint
from lm.config import GPTConfig
from lm.moe import routing
from lm.sizing import active_parameter_count
from tests.checkpoints import make_checkpoint
from tests.conftest import open_page

PAGE = "app_pages/attention.py"
TEXT = "To be, or not to be: that is the question."


@pytest.fixture
def runs(app_dirs):
    return app_dirs / "runs"


def tab_labels(at) -> list[str]:
    return [tab.label for tab in at.tabs]


def test_the_experts_tab_shows_the_models_own_routing(runs):
    folder = make_checkpoint(runs / "moe", n_experts=4, experts_top_k=2)
    at = open_page(PAGE)
    at.text_area(key="att_text").set_value(TEXT).run()
    assert "Experts" in tab_labels(at)
    at.session_state["att_tab"] = "Experts"
    at.run()
    assert not at.exception, at.exception
    checkpoint = load_checkpoint(folder)
    expected = routing(checkpoint.model, checkpoint.tokenizer.encode(TEXT))
    last = len(checkpoint.tokenizer.encode(TEXT)) - 1
    lines = [m.value for m in at.markdown if m.value.startswith("layer 0")]
    experts, weights = expected.experts.numpy(), expected.weights.numpy()
    assert lines == [f"layer 0 → {choices_text(experts[0, last], weights[0, last])}  \n"
                     f"layer 1 → {choices_text(experts[1, last], weights[1, last])}"]
    chips = next(h.proto.body for h in at.get("html") if "layer 0" in h.proto.body)
    assert chips.count('<span title="experts ') == 2 * (last + 1)  # a chip a token a layer
    bars = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    shares = np.array([bar["x"] for bar in bars]).T  # [layers, experts]
    np.testing.assert_allclose(shares, expected.load.numpy(), atol=1e-6)


def test_a_dense_model_has_no_experts_tab(runs):
    make_checkpoint(runs / "dense")
    at = open_page(PAGE)
    assert "Model view" in tab_labels(at) and "Experts" not in tab_labels(at)


def test_the_train_page_plots_the_balance_loss_only_when_logged():
    metrics = [{"step": s, "train_loss": 3.0, "balance_loss": 1.0 + 0.1 / s} for s in (10, 20, 30)]
    assert has_balance_loss(metrics) and not has_balance_loss([{"step": 10, "train_loss": 3.0}])
    figure = balance_figure(metrics)
    assert list(figure.data[0].x) == [10, 20, 30]
    assert list(figure.data[0].y) == [m["balance_loss"] for m in metrics]


def test_the_model_view_names_the_experts_and_the_active_parameters():
    config = GPTConfig(vocab_size=64, block_size=8, n_layer=2, n_head=2, n_embd=16, n_experts=4, experts_top_k=2)
    assert "4 experts, each a" in mlp_box(config) and "sends it to 2" in mlp_box(config)
    sizes = size_estimates(config)
    assert sizes["Active per token"] == si(active_parameter_count(config)) != sizes["Parameters"]
    assert {"setting": "experts", "value": "2 of 4 a token", "meaning": why("n_experts", 4)} in architecture_rows(config)
    assert "Active per token" not in size_estimates(GPTConfig(vocab_size=64, block_size=8, n_layer=1, n_head=1, n_embd=8))
