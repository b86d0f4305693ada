"""Tests for explorer.attention_view and the figures drawn from it: the forward pass against
the model and against a hand computation, head statistics on attention patterns with known
answers, the step-through arithmetic, and figures whose data must be the model's numbers."""

from __future__ import annotations

import html
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from explorer.attention_lines import line_bands, lines_figure
from explorer.attention_maps import (
    GRID_CELLS, LABELLED, LABELLED_SMALL, attention_figure, head_grid_figure, pool_max, scores_figure, tokens_window,
)
from explorer.attention_view import MAX_TOKENS, context_window, run_attention, run_layer
from explorer.head_arithmetic import query_rows, value_mix, value_mix_figure
from explorer.head_statistics import head_statistics, uniform_entropy
from explorer.model_view import block_diagram_html, config_rows, parameter_figure, si, size_estimates
from lm.attention import Probe
from lm.model import GPT, GPTConfig
from lm.sizing import flops_per_token, parameter_count, training_memory_bytes
from lm.tokenizer import BPETokenizer
from tests.checkpoints import sharpen_attention

BYTES = BPETokenizer([])  # 256 byte tokens + <|endoftext|>: each character of an ASCII text is a token
TEXT = "the cat <b> the mat & the hat"


@pytest.fixture(scope="module")
def model() -> GPT:
    """A random GPT with biases and larger weights than at initialisation, so attention is far from uniform."""
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=BYTES.vocab_size, block_size=64, n_layer=2, n_head=3, n_embd=24)
    return sharpen_attention(GPT(config).eval(), 15)


@pytest.fixture(scope="module")
def run(model):
    return run_attention(model, BYTES, BYTES.encode(TEXT))


def layer_of(model, layer, text=TEXT):
    return run_layer(model, BYTES, BYTES.encode(text), layer)


def test_context_window_keeps_the_last_tokens():
    ids = list(range(40))
    assert context_window(ids, 32) == (ids[-32:], 8)
    assert context_window(ids, 64) == (ids, 0)
    long = list(range(MAX_TOKENS + 10))
    assert context_window(long, 1024) == (long[-MAX_TOKENS:], 10)


def test_run_attention_and_run_layer_equal_the_models_own_forward_pass(model):
    ids = BYTES.encode(TEXT)
    before = {name: p.clone() for name, p in model.state_dict().items()}
    run, layers = run_attention(model, BYTES, ids), [layer_of(model, layer) for layer in range(2)]
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())  # a shared model: untouched
    with torch.no_grad():
        steps = model(torch.tensor([ids]), probe=Probe(explain=True)).attention
    for layer, step in enumerate(steps):
        one = layers[layer]
        np.testing.assert_allclose(run.weights[layer], step.weights[0].numpy(), rtol=0, atol=1e-6)
        np.testing.assert_array_equal(one.weights, run.weights[layer])  # the step-through's weights are the maps'
        np.testing.assert_allclose(one.scores, step.scores[0].numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(one.outputs, step.output[0].numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(one.weights @ one.values, one.outputs, atol=1e-5)  # v is the v the model mixed
        for head in range(3):  # the page's numpy mask is the model's own
            np.testing.assert_array_equal(one.masked(head) == -np.inf, step.masked[0, head].numpy() == -np.inf)
    assert run.labels[:4] == ("t", "h", "e", "·") and layers[1].labels == run.labels and layers[1].layer == 1
    assert run.weights.shape == (2, 3, len(ids), len(ids)) and layers[0].head_size == 8
    assert not model.training and all(p.grad is None for p in model.parameters())


def test_first_layer_matches_a_computation_by_hand(model):
    """Layer 0 from the raw parameters: embeddings, LayerNorm, one matmul for q, k, v, then per head."""
    ids = torch.tensor(BYTES.encode(TEXT))
    T, C, H = len(ids), 24, 3
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    run = layer_of(model, 0)
    x = sd["transformer.wte.weight"][ids] + sd["transformer.wpe.weight"][:T]
    h = F.layer_norm(x, (C,), sd["transformer.h.0.ln_1.weight"], sd["transformer.h.0.ln_1.bias"])
    qkv = h @ sd["transformer.h.0.attn.c_attn.weight"] + sd["transformer.h.0.attn.c_attn.bias"]
    for head in range(H):
        d = C // H
        q, k, v = (qkv[:, part * C + head * d : part * C + (head + 1) * d].numpy() for part in range(3))
        scores = q @ k.T / math.sqrt(d)
        masked = np.where(np.tril(np.ones((T, T), bool)), scores, -np.inf)
        weights = np.exp(masked - masked.max(1, keepdims=True))
        weights /= weights.sum(1, keepdims=True)
        np.testing.assert_allclose(run.queries[head], q, atol=1e-5)
        np.testing.assert_allclose(run.scores[head], scores, atol=1e-4)
        np.testing.assert_allclose(run.masked(head), masked, atol=1e-4)
        np.testing.assert_allclose(run.weights[head], weights, atol=1e-5)
        np.testing.assert_allclose(run.outputs[head], weights @ v, atol=1e-5)
    assert run.weights.max() > 0.5  # the test model's attention is sharp, not uniform


def test_run_attention_refuses_more_tokens_than_the_context_and_run_layer_a_missing_layer(model):
    with pytest.raises(ValueError, match="1 to 64 tokens"):
        run_attention(model, BYTES, [65] * 65)
    with pytest.raises(ValueError, match="layers 0 to 1, not 2"):
        layer_of(model, 2)


# --- head statistics on hand-built patterns ---------------------------------------------

T = 5


def pattern(kind: str) -> np.ndarray:
    """A T×T causal attention pattern whose statistics are known."""
    w = np.zeros((T, T))
    for i in range(T):
        if kind == "previous":
            w[i, max(i - 1, 0)] = 1
        elif kind == "first":
            w[i, 0] = 1
        elif kind == "self":
            w[i, i] = 1
        elif kind == "uniform":
            w[i, : i + 1] = 1 / (i + 1)
        elif kind == "half previous, half first":
            w[i, 0] += 0.5
            w[i, max(i - 1, 0)] += 0.5
    return w


def stats_of(*kinds: str) -> list[dict]:
    return head_statistics(np.stack([pattern(k) for k in kinds])[None])  # one layer, one head per pattern


def test_previous_token_head():
    [row] = stats_of("previous")
    assert row["previous token"] == 1 and row["itself"] == 0 and row["entropy (bits)"] == 0
    assert row["first token"] == pytest.approx(1 / (T - 1))  # only query 1, whose previous token is the first
    assert row["mostly"] == "previous token"


def test_first_token_and_self_heads():
    first, itself = stats_of("first", "self")
    assert (first["first token"], first["previous token"], first["itself"]) == (1, pytest.approx(1 / (T - 1)), 0)
    assert first["mostly"] == "first token" and first["entropy (bits)"] == 0
    assert (itself["itself"], itself["previous token"], itself["first token"]) == (1, 0, 0)
    assert itself["mostly"] == "itself"


def test_uniform_head_has_the_largest_entropy():
    [row] = stats_of("uniform")
    assert row["entropy (bits)"] == pytest.approx((math.log2(2) + math.log2(3) + math.log2(4) + math.log2(5)) / 4)
    assert row["entropy (bits)"] == pytest.approx(uniform_entropy(T))
    for share in ("previous token", "first token", "itself"):
        assert row[share] == pytest.approx((1 / 2 + 1 / 3 + 1 / 4 + 1 / 5) / 4)
    assert row["mostly"] == "other"


def test_split_head_has_one_bit_of_entropy():
    [row] = stats_of("half previous, half first")
    # query 1: both halves land on token 0 (0 bits); queries 2-4: two keys at 0.5 (1 bit each)
    assert row["entropy (bits)"] == pytest.approx(3 / 4)
    assert row["previous token"] == pytest.approx((1 + 0.5 * 3) / 4)
    assert row["first token"] == pytest.approx((1 + 0.5 * 3) / 4)
    assert row["itself"] == 0


def test_rows_come_layer_by_layer_then_head_by_head():
    weights = np.array([[pattern("previous"), pattern("self")], [pattern("first"), pattern("uniform")]])
    rows = head_statistics(weights)
    assert [(r["layer"], r["head"], r["mostly"]) for r in rows] == [
        (0, 0, "previous token"), (0, 1, "itself"), (1, 0, "first token"), (1, 1, "other"),
    ]


def test_statistics_need_two_tokens():
    with pytest.raises(ValueError, match="two tokens"):
        head_statistics(np.ones((1, 1, 1, 1)))


def test_statistics_of_the_model_agree_with_the_definition(run):
    rows = head_statistics(run.weights)
    w = run.weights[1, 2].astype(np.float64)
    T_ = w.shape[0]
    row = rows[1 * 3 + 2]
    entropy = np.mean([-sum(p * math.log2(p) for p in w[i, : i + 1] if p > 0) for i in range(1, T_)])
    assert row["entropy (bits)"] == pytest.approx(entropy, abs=1e-5)
    assert row["previous token"] == pytest.approx(np.mean([w[i, i - 1] for i in range(1, T_)]), abs=1e-6)
    assert row["first token"] == pytest.approx(np.mean([w[i, 0] for i in range(1, T_)]), abs=1e-6)
    assert row["itself"] == pytest.approx(np.mean([w[i, i] for i in range(1, T_)]), abs=1e-6)


# --- the step-through ------------------------------------------------------------------


def test_query_rows_write_out_the_arithmetic(model):
    head, query = 1, 10
    run = layer_of(model, 1)
    rows = query_rows(run, head, query)
    assert [r["key"] for r in rows][:3] == ["#0 t", "#1 h", "#2 e"] and len(rows) == query + 1
    d = run.head_size
    q, k = run.queries[head, query], run.keys[head]
    dots = np.array([float(q @ k[j]) for j in range(query + 1)])
    np.testing.assert_allclose([r["q·k"] for r in rows], dots, rtol=1e-5)
    np.testing.assert_allclose([r["score"] for r in rows], dots / math.sqrt(d), rtol=1e-4, atol=1e-5)
    exps = np.exp(dots / math.sqrt(d) - (dots / math.sqrt(d)).max())
    np.testing.assert_allclose([r["e^(score − max)"] for r in rows], exps, rtol=1e-4)
    np.testing.assert_allclose([r["weight"] for r in rows], exps / exps.sum(), rtol=1e-4, atol=1e-6)


def test_value_mix_rows_add_up_to_the_models_output(model):
    head, query = 2, 12
    run = layer_of(model, 0)
    w = run.weights[head, query, : query + 1].astype(np.float64)
    v = run.values[head, : query + 1].astype(np.float64)
    mix = value_mix(run, head, query, top=4)
    top = sorted(np.argsort(-w)[:4])
    assert mix.labels[:4] == [f"{w[j]:.2f} × v of #{j} {run.labels[j]}" for j in top]
    assert mix.labels[4] == f"the other {query + 1 - 4} keys' w × v (weights add to {1 - w[top].sum():.2f})"
    np.testing.assert_allclose(mix.rows[:4], w[top, None] * v[top], atol=1e-7)
    np.testing.assert_allclose(mix.rows.sum(0), w @ v, atol=1e-6)
    np.testing.assert_allclose(mix.output, run.outputs[head, query], atol=0)
    assert mix.error < 1e-5

    everything = value_mix(run, head, 3, top=12)  # 4 keys: one row each, nothing summed
    assert len(everything.labels) == 4 and everything.error < 1e-5


# --- figures ----------------------------------------------------------------------------


def test_attention_figure_is_the_heads_weights_at_token_positions(run):
    fig = attention_figure(run, 1, 2, "layer 1, head 2")
    heatmap = fig.data[0]
    np.testing.assert_array_equal(heatmap.z, run.weights[1, 2])
    T = len(run.ids)
    # "·the" occurs three times: one category per position keeps them apart, the ticks name the token
    assert len(set(heatmap.x)) == T and heatmap.x == heatmap.y
    assert heatmap.x[:5] == ("#0 t", "#1 h", "#2 e", "#3 ·", "#4 c")
    assert fig.layout.yaxis.range == (T - 0.5, -0.5)  # query 0 at the top
    ticks = dict(zip(fig.layout.xaxis.tickvals, fig.layout.xaxis.ticktext))
    assert [ticks[x] for x in heatmap.x[:3]] == ["t", "h", "e"]
    assert "query %{y}<br>key %{x}<br>weight %{z:.3f}" in heatmap.hovertemplate
    # token text is escaped for plotly, which reads tags and entities in text
    b = run.labels.index("b")
    assert heatmap.x[b - 1 : b + 2] == (f"#{b - 1} &lt;", f"#{b} b", f"#{b + 1} &gt;")
    assert (ticks[heatmap.x[b - 1]], ticks[heatmap.x[b + 1]]) == ("&lt;", "&gt;") and "&amp;" in ticks.values()


def test_short_texts_get_their_numbers_written_in(model):
    short = run_attention(model, BYTES, BYTES.encode("abcab"))
    fig = attention_figure(short, 0, 0, "short")
    text = fig.data[0].text
    assert text[1][0] == f"{short.weights[0, 0, 1, 0]:.2f}" and text[0][1] == ""  # the future is left blank
    steps = layer_of(model, 0, "abcab")
    masked = scores_figure(steps, 0, query=4, masked=True)
    assert (masked.data[1].text[0][1], masked.data[1].text[1][0]) == ("−∞", "")  # only the future is −∞
    assert (masked.data[0].text[0][1], masked.data[0].text[1][0]) == ("", f"{steps.scores[0, 1, 0]:.2f}")
    assert attention_figure(run_attention(model, BYTES, BYTES.encode("x" * 40)), 0, 0, "long").data[0].text is None


def test_scores_figures_before_and_after_the_mask(model):
    run = layer_of(model, 0)
    T = len(run.labels)
    future = np.triu(np.ones((T, T), bool), 1)
    before = scores_figure(run, 1, query=5)
    np.testing.assert_array_equal(before.data[0].z, run.scores[1])
    after = scores_figure(run, 1, query=5, masked=True)
    z = np.asarray(after.data[0].z, dtype=float)
    assert np.isnan(z[future]).all()
    np.testing.assert_array_equal(z[~future], run.scores[1][~future])
    grey = np.asarray(after.data[1].z, dtype=float)
    assert (grey[future] == 1).all() and np.isnan(grey[~future]).all()
    assert after.layout.shapes[0].y0 == 4.5  # the chosen query's row is outlined


def test_value_mix_figure_shows_rows_then_the_output(model):
    mix = value_mix(layer_of(model, 1), 0, 20, top=5)
    fig = value_mix_figure(mix)
    z = np.asarray(fig.data[0].z, dtype=float)
    np.testing.assert_array_equal(z[:6], mix.rows)
    assert np.isnan(z[6]).all()
    np.testing.assert_array_equal(z[7], mix.output)
    assert fig.data[0].y[-1] == "= output" and fig.data[0].y[0] == html.escape(mix.labels[0], quote=False)  # plotly reads HTML


def test_pool_max_keeps_the_largest_weight_of_each_block():
    rng = np.random.default_rng(0)
    small = rng.random((2, 3, GRID_CELLS, GRID_CELLS))
    assert pool_max(small)[0] is small
    w = rng.random((1, 2, 130, 130))
    pooled, s = pool_max(w, cells=64)
    assert s == 3 and pooled.shape == (1, 2, 44, 44)
    for i, j in ((0, 0), (10, 43), (43, 43)):
        assert pooled[0, 1, i, j] == w[0, 1, i * 3 : i * 3 + 3, j * 3 : j * 3 + 3].max()


def test_head_grid_has_every_head_in_place(run):
    fig = head_grid_figure(run.weights, chosen=(1, 2), title="grid")
    L, H, T = run.weights.shape[:3]
    step = T + 3  # a map and its gap
    assert len(fig.data) == L * H
    for layer in range(L):
        for head in range(H):
            trace = fig.data[layer * H + head]
            np.testing.assert_array_equal(trace.z, run.weights[layer, head])
            assert (trace.x0, trace.y0) == (head * step, layer * step)
            assert trace.hovertemplate.startswith(f"layer {layer} · head {head}<br>")
    assert fig.layout.xaxis.ticktext == ("head 0", "head 1", "head 2")
    assert fig.layout.yaxis.ticktext == ("layer 0", "layer 1")
    outline = fig.layout.shapes[0]  # around layer 1, head 2: cells span x0 − 0.5 … x0 + T − 0.5
    assert (outline.x0, outline.x1) == (2 * step - 1.5, 2 * step + T + 0.5)
    assert (outline.y0, outline.y1) == (step - 1.5, step + T + 0.5)


def test_head_grid_pools_long_texts():
    w = np.random.default_rng(1).random((1, 1, 200, 200))
    fig = head_grid_figure(w, (0, 0), "long")
    pooled, s = pool_max(w)
    np.testing.assert_array_equal(fig.data[0].z, pooled[0, 0])
    assert s == 4 and "the largest in a 4×4 block" in fig.data[0].hovertemplate


# --- the Model view --------------------------------------------------------------------

CONFIG = GPTConfig(vocab_size=320, block_size=256, n_layer=6, n_head=6, n_embd=384)


def test_parameter_chart_adds_up_to_the_real_parameter_count(monkeypatch):
    fig = parameter_figure(CONFIG)
    monkeypatch.setattr("lm.sizing.physical_memory_bytes", lambda: None)
    with torch.device("meta"):
        real = sum(p.numel() for p in GPT(CONFIG).parameters())
    assert sum(fig.data[0].x) == parameter_count(CONFIG) == real
    assert dict(zip(fig.data[0].y, fig.data[0].x))["MLP"] == 6 * (384 * 1536 * 2 + 1536 + 384)


def test_size_estimates_and_config_rows():
    sizes = size_estimates(CONFIG)
    assert sizes["Parameters"] == si(parameter_count(CONFIG)) == "10.9 M"
    assert sizes["Weights (fp32)"] == si(4 * parameter_count(CONFIG), "B") == "43.5 MB"
    assert sizes["Training memory"] == si(training_memory_bytes(CONFIG), "B")
    assert sizes["Forward FLOPs"] == si(flops_per_token(CONFIG, training=False))
    rows = {r["setting"]: r["value"] for r in config_rows(CONFIG)}
    assert rows["n_embd"] == "384" and rows["head size"] == "64" and rows["bias"] == "True"
    assert si(124_439_808) == "124 M" and si(950) == "950" and si(1.5e9, "B") == "1.5 GB"


def test_block_diagram_carries_the_real_sizes():
    diagram = block_diagram_html(CONFIG)
    for part in ("× 6 blocks", "6 heads × 64", "384 → 1,536 → GELU → 384", "320 × 384 table", "256 × 384 table",
                 "Head: 384 → 320", "T ≤ 256"):
        assert part in diagram, part
    per_block = (parameter_count(CONFIG) - 320 * 384 - 256 * 384 - 2 * 384) // 6
    assert f"{si(per_block)} parameters each" in diagram


def test_a_long_text_is_shown_a_window_at_a_time_every_token_labelled(model):
    long = run_attention(model, BYTES, BYTES.encode("abcdefghij" * 6))  # 60 tokens, past LABELLED
    assert tokens_window(60, LABELLED) == slice(12, 60) and tokens_window(60, 16, end=3) == slice(0, 16)
    fig = attention_figure(long, 0, 1, "long", window=tokens_window(60, 16, end=30))
    heatmap = fig.data[0]
    np.testing.assert_array_equal(heatmap.z, long.weights[0, 1][15:31, 15:31])
    assert heatmap.x[0] == "#15 f" and list(fig.layout.xaxis.tickvals) == list(heatmap.x)  # every token labelled
    assert list(fig.layout.xaxis.ticktext) == list(long.labels[15:31])
    for compact, shown in ((False, LABELLED), (True, LABELLED_SMALL)):  # no window: the last tokens its size can label
        heatmap = attention_figure(long, 0, 1, "long", compact=compact).data[0]
        np.testing.assert_array_equal(heatmap.z, long.weights[0, 1][60 - shown:, 60 - shown:])


def test_lines_view_draws_each_weight_in_its_band(run):
    weights = run.weights[1, 0]
    T = len(run.ids)
    bands = line_bands(weights, list(range(T)))
    drawn = {pair for _, pairs in bands for pair in pairs}
    assert all(j <= i for i, j in drawn)  # no line to the future
    assert drawn == {(i, j) for i in range(T) for j in range(i + 1) if weights[i, j] >= 0.01}
    fig = lines_figure(weights, run.labels, "lines", query=5)
    focus = [trace for trace in fig.data if trace.line.color == "#e8590c"]
    assert {y for trace in focus for y in trace.y[::3]} == {5}  # the followed token's lines start at it
    assert list(fig.data[-2].text) == [html.escape(label, quote=False) for label in run.labels]
