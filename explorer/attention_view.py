"""The Attention page's data and figures: one forward pass kept whole (each layer's
queries, keys, values, scores and weights), per-head statistics, the step-by-step
arithmetic of one head, and the Model view. Pure functions (a model and token ids
in; arrays, rows and plotly figures out), so tests need no server."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch

from explorer.charts import PROJECTOR_FONT
from explorer.token_view import token_label
from lm.attention import causal_mask
from lm.model import GPT, GPTConfig, flops_per_token, parameter_breakdown, parameter_count, training_memory_bytes

MAX_TOKENS = 256  # beyond this a T×T map has more cells than a screen has pixels to show them
ANNOTATE_MAX = 12  # write the numbers into the cells up to this many tokens (cells wide enough)
GRID_CELLS = 64  # each small map of the all-heads grid is at most this many cells a side
MIX_ROWS = 12  # value vectors drawn one by one when a query mixes many
HIGHLIGHT = "#e8590c"
MASKED_GREY = "#ced4da"
FONT = PROJECTOR_FONT | dict(color="#212529")  # the theme's grey text is too faint on a projector
TOKEN_FONT = dict(size=14, color="#212529")
HOVER = dict(font=dict(size=16))


# --- the forward pass -----------------------------------------------------------------


def context_window(ids: list[int], block_size: int) -> tuple[list[int], int]:
    """The last tokens the page shows: a model reads at most `block_size` at once, and the
    page draws at most MAX_TOKENS. Returns them and how many were cut from the front."""
    keep = min(block_size, MAX_TOKENS)
    return ids[-keep:], max(0, len(ids) - keep)


@dataclass(frozen=True)
class AttentionRun:
    """Attention in every layer and head for one text, as numpy arrays: [layers, heads, T, T]
    for scores and weights, [layers, heads, T, head size] for the vectors."""

    ids: tuple[int, ...]
    labels: tuple[str, ...]  # each token's text, whitespace made visible
    queries: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    scores: np.ndarray  # q·k/√d for every pair, before the mask
    weights: np.ndarray  # softmax of each masked row: sums to 1, zero after the query
    outputs: np.ndarray  # weights @ values: what each head passes on

    @property
    def head_size(self) -> int:
        return self.values.shape[-1]

    def masked(self, layer: int, head: int) -> np.ndarray:
        """One head's scores after the causal mask (the model's own): −inf where the key comes later."""
        T = len(self.ids)
        return np.where(causal_mask(T, T).numpy(), self.scores[layer, head], -np.inf)


@torch.inference_mode()
def run_attention(model: GPT, tokenizer, ids: list[int]) -> AttentionRun:
    """One pass through the model's own modules, block by block as GPT.forward goes, keeping
    each layer's q, k and v too: AttentionSteps starts at the scores, and the page shows
    where they come from. Reads the model, never changes it (it is shared between sessions)."""
    if not 0 < len(ids) <= model.config.block_size:
        raise ValueError(f"need 1 to {model.config.block_size} tokens, got {len(ids)}")
    parts = model.transformer
    idx = torch.tensor([ids], dtype=torch.long, device=parts.wte.weight.device)
    x = parts.drop(parts.wte(idx) + parts.wpe(torch.arange(len(ids), device=idx.device)))
    kept = {name: [] for name in ("queries", "keys", "values", "scores", "weights", "outputs")}
    for block in parts.h:
        q, k, v = block.attn.split_heads(block.ln_1(x))
        x, steps = block(x, explain=True)
        for name, tensor in zip(kept, (q, k, v, steps.scores, steps.weights, steps.output)):
            kept[name].append(tensor[0])
    arrays = {name: torch.stack(per_layer).float().cpu().numpy() for name, per_layer in kept.items()}
    return AttentionRun(tuple(ids), tuple(token_label(tokenizer.token_bytes(i)) for i in ids), **arrays)


# --- per-head statistics ---------------------------------------------------------------


def head_statistics(weights: np.ndarray) -> list[dict]:
    """One row per head of `weights` [layers, heads, T, T], T ≥ 2. Every figure is an
    average over the query positions i = 1 … T−1 (position 0 can only look at itself, so
    it says nothing about the head), of, for query i:

    - entropy: −Σ_j w_ij·log2 w_ij in bits, 0 when the query looks at one key only,
      log2(i+1) when it spreads evenly over all i+1 keys it may see;
    - previous token: w_i,i−1;  first token: w_i,0;  itself: w_i,i
      (for query 1 the previous token is the first token: it counts for both).

    "mostly" names whichever of those three takes at least half of the weight on average,
    else "other"."""
    L, H, T, _ = weights.shape
    if T < 2:
        raise ValueError("head statistics need at least two tokens")
    rows = weights[..., 1:, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(rows > 0, rows * np.log2(rows), 0.0).sum(-1).mean(-1)
    patterns = {
        "previous token": np.diagonal(weights, offset=-1, axis1=-2, axis2=-1).mean(-1),
        "first token": rows[..., 0].mean(-1),
        "itself": np.diagonal(weights, axis1=-2, axis2=-1)[..., 1:].mean(-1),
    }
    table = []
    for layer in range(L):
        for head in range(H):
            shares = {name: float(values[layer, head]) for name, values in patterns.items()}
            top = max(shares, key=shares.get)
            table.append(
                {"layer": layer, "head": head, "entropy (bits)": float(entropy[layer, head])}
                | shares
                | {"mostly": top if shares[top] >= 0.5 else "other"}
            )
    return table


def uniform_entropy(n_tokens: int) -> float:
    """The entropy head_statistics reports for a head that spreads evenly: a yardstick."""
    return float(np.mean(np.log2(np.arange(2, n_tokens + 1)))) if n_tokens > 1 else 0.0


# --- one head, step by step ------------------------------------------------------------


def query_rows(run: AttentionRun, layer: int, head: int, query: int) -> list[dict]:
    """One query's row of attention, key by key, with the arithmetic written out: q·k; the
    model's score, which is q·k/√d; e^(score − the row's max); and the model's weight, which is
    that over the row's sum. Keys after the query are masked and get no row."""
    q = run.queries[layer, head, query]
    keys = run.keys[layer, head, : query + 1]
    scores = run.scores[layer, head, query, : query + 1]
    exps = np.exp(scores - scores.max())
    weights = run.weights[layer, head, query, : query + 1]
    return [
        {
            "key": f"#{j} {run.labels[j]}",
            "q·k": float(q @ keys[j]),
            "score": float(scores[j]),
            "e^(score − max)": float(exps[j]),
            "weight": float(weights[j]),
        }
        for j in range(query + 1)
    ]


@dataclass(frozen=True)
class ValueMix:
    """How one query's output is built: rows of weight × value vector that add up to it."""

    labels: list[str]  # what each row is, e.g. "0.42 × v of #3 ·the"
    rows: np.ndarray  # [rows, head size]: each a value vector scaled by its weight
    output: np.ndarray  # [head size]: the model's own output for this query and head

    @property
    def error(self) -> float:
        """Largest gap between the sum of the rows and the model's output (rounding only)."""
        return float(np.abs(self.rows.sum(0) - self.output).max())


def value_mix(run: AttentionRun, layer: int, head: int, query: int, top: int = MIX_ROWS) -> ValueMix:
    """output_i = Σ_j w_ij·v_j. The `top` keys with the largest weights get a row each (in
    text order); the rest are summed into one row, so the rows still add up to the output."""
    weights = run.weights[layer, head, query, : query + 1].astype(np.float64)
    weighted = weights[:, None] * run.values[layer, head, : query + 1]
    shown = np.sort(np.argsort(-weights, kind="stable")[:top])
    rest = np.setdiff1d(np.arange(query + 1), shown)
    labels = [f"{weights[j]:.2f} × v of #{j} {run.labels[j]}" for j in shown]
    rows = [weighted[j] for j in shown]
    if len(rest):
        labels.append(f"the other {len(rest)} keys' w × v (weights add to {weights[rest].sum():.2f})")
        rows.append(weighted[rest].sum(0))
    return ValueMix(labels, np.array(rows), run.outputs[layer, head, query].astype(np.float64))


# --- figures ---------------------------------------------------------------------------


def _plotly_text(label: str) -> str:
    """Plotly reads <, > and & in text as markup: token text must not be."""
    return html.escape(label, quote=False)


def _token_heatmap(
    z: np.ndarray,
    labels: tuple[str, ...],
    *,
    title: str,
    value_name: str,
    colorscale: str,
    zmin: float,
    zmax: float,
    masked: np.ndarray | None = None,
    blank: np.ndarray | None = None,
    highlight_row: int | None = None,
    compact: bool = False,
) -> go.Figure:
    """A T×T map. Each position is its own category ("#7 ·the"), so a repeated token gets its own
    row and column and the hover names it without a string per cell; the ticks show the token.
    `masked` cells are drawn grey as −∞; `blank` cells get no number written in."""
    T = len(labels)
    names = [_plotly_text(label) for label in labels]
    positions = [f"#{i} {name}" for i, name in enumerate(names)]  # unique, so equal tokens never merge
    annotate = T <= ANNOTATE_MAX
    hidden = masked if masked is not None else blank
    gap = 1 if annotate else 0
    fig = go.Figure(
        go.Heatmap(
            z=z if masked is None else np.where(masked, np.nan, z),
            x=positions, y=positions,
            text=[["" if hidden is not None and hidden[i, j] else f"{z[i, j]:.2f}" for j in range(T)] for i in range(T)]
            if annotate else None,
            texttemplate="%{text}" if annotate else None,
            textfont=dict(size=13),
            colorscale=colorscale, zmin=zmin, zmax=zmax,
            colorbar=dict(title=dict(text=value_name, side="right", font=FONT)),
            hovertemplate=f"query %{{y}}<br>key %{{x}}<br>{value_name} %{{z:.3f}}<extra></extra>",
            hoverongaps=False, xgap=gap, ygap=gap,
        )
    )
    if masked is not None:
        fig.add_trace(
            go.Heatmap(
                z=np.where(masked, 1.0, np.nan), x=positions, y=positions,
                colorscale=[[0, MASKED_GREY], [1, MASKED_GREY]], showscale=False, hoverongaps=False,
                text=np.where(masked, "−∞", "").tolist() if annotate else None,
                texttemplate="%{text}" if annotate else None,
                textfont=dict(size=13, color="#495057"), xgap=gap, ygap=gap,
                hovertemplate="query %{y}<br>key %{x}<br>masked: the key comes later (−∞)<extra></extra>",
            )
        )
    ticks = list(range(0, T, math.ceil(T / (20 if compact else 40))))
    tick_axis = dict(
        type="category", tickmode="array", tickvals=[positions[i] for i in ticks], ticktext=[names[i] for i in ticks],
        tickfont=TOKEN_FONT,
    )
    fig.update_xaxes(title=dict(text="key: the token looked at", font=FONT), tickangle=-60, range=[-0.5, T - 0.5],
                     **tick_axis)
    fig.update_yaxes(title=dict(text="query: the token looking", font=FONT), range=[T - 0.5, -0.5],  # query 0 on top
                     **tick_axis)
    if highlight_row is not None:
        fig.add_shape(
            type="rect", x0=-0.5, x1=T - 0.5, y0=highlight_row - 0.5, y1=highlight_row + 0.5,
            line=dict(color=HIGHLIGHT, width=3),
        )
    fig.update_layout(
        title=title, font=FONT, margin=dict(l=20, r=20, t=60, b=20), hoverlabel=HOVER,
        height=520 if compact else max(480, min(760, 200 + 22 * T)),
    )
    return fig


def attention_figure(
    run: AttentionRun, layer: int, head: int, title: str, highlight_row: int | None = None, compact: bool = False
) -> go.Figure:
    """One head's weights: row i is how query i spreads its attention over keys 0…i."""
    return weights_figure(run.weights[layer, head], run.labels, title, highlight_row, compact)


def weights_figure(
    weights: np.ndarray, labels: tuple[str, ...], title: str, highlight_row: int | None = None, compact: bool = False
) -> go.Figure:
    """A [T, T] map of attention weights over the tokens' labels (for a snapshot saved in training too)."""
    T = len(labels)
    return _token_heatmap(
        weights, labels, title=title, value_name="weight", colorscale="Blues", zmin=0.0,
        zmax=1.0, blank=~causal_mask(T, T).numpy(), highlight_row=highlight_row, compact=compact,
    )


def scores_figure(run: AttentionRun, layer: int, head: int, query: int, masked: bool = False) -> go.Figure:
    """The scores q·k/√d, before the mask (every pair) or after it (the future is −∞, grey)."""
    scores = run.scores[layer, head]
    limit = float(np.abs(scores).max()) or 1.0
    return _token_heatmap(
        scores, run.labels,
        title="after the causal mask: the future is −∞" if masked else "scores q·k/√d: every query with every key",
        value_name="score", colorscale="RdBu", zmin=-limit, zmax=limit,
        masked=np.isinf(run.masked(layer, head)) if masked else None, highlight_row=query, compact=True,
    )


def pool_max(weights: np.ndarray, cells: int = GRID_CELLS) -> tuple[np.ndarray, int]:
    """Shrink the last two axes to at most `cells` by keeping the largest weight of each
    s×s block (s = ⌈T/cells⌉): a sharp pattern such as "the previous token" stays visible,
    where an average would fade it. Returns the pooled array and s."""
    T = weights.shape[-1]
    s = math.ceil(T / cells)
    if s == 1:
        return weights, 1
    n = math.ceil(T / s)
    pad = [(0, 0)] * (weights.ndim - 2) + [(0, n * s - T)] * 2  # weights are ≥ 0: a 0 pad never wins
    pooled = np.pad(weights, pad).reshape(*weights.shape[:-2], n, s, n, s).max(axis=(-3, -1))
    return pooled, s


def head_grid_figure(weights: np.ndarray, chosen: tuple[int, int], title: str) -> go.Figure:
    """Every head at once, layers down and heads across, the chosen one outlined. One pair of
    axes with a small map per head (placed by x0/y0) draws in half the time of L×H subplots."""
    pooled, s = pool_max(weights)
    L, H, n, _ = pooled.shape
    step = n + max(2, n // 8)  # a map and the gap after it
    detail = "" if s == 1 else f" (the largest in a {s}×{s} block)"
    fig = go.Figure()
    for layer in range(L):
        for head in range(H):
            fig.add_trace(
                go.Heatmap(
                    z=pooled[layer, head], x0=head * step, y0=layer * step, coloraxis="coloraxis",
                    hovertemplate=f"layer {layer} · head {head}<br>weight %{{z:.2f}}{detail}<extra></extra>",
                )
            )
    centres = [i * step + (n - 1) / 2 for i in range(max(L, H))]
    grid = dict(tickmode="array", showgrid=False, zeroline=False, ticks="", tickfont=FONT, constrain="domain")
    fig.update_xaxes(tickvals=centres[:H], ticktext=[f"head {h}" for h in range(H)], side="top",
                     range=[-1.5, (H - 1) * step + n + 0.5], **grid)
    fig.update_yaxes(tickvals=centres[:L], ticktext=[f"layer {layer}" for layer in range(L)],
                     range=[(L - 1) * step + n + 0.5, -1.5], scaleanchor="x", **grid)  # square maps
    layer, head = chosen
    fig.add_shape(
        type="rect", x0=head * step - 1.5, x1=head * step + n + 0.5, y0=layer * step - 1.5, y1=layer * step + n + 0.5,
        line=dict(color=HIGHLIGHT, width=4),
    )
    fig.update_layout(
        title=title, font=FONT, height=110 + L * min(150, 700 // H), plot_bgcolor="white", hoverlabel=HOVER,
        coloraxis=dict(
            colorscale="Blues", cmin=0, cmax=1, colorbar=dict(title=dict(text="weight", side="right", font=FONT))
        ),
        margin=dict(l=20, r=20, t=90, b=20),
    )
    return fig


def top_heads(scores: np.ndarray, count: int) -> list[tuple[int, int, float]]:
    """(layer, head, score) of the `count` highest-scoring heads of [layers, heads] scores."""
    order = np.argsort(-scores, axis=None, kind="stable")[:count]
    return [(int(i) // scores.shape[1], int(i) % scores.shape[1], float(scores.flat[i])) for i in order]


def detector_figure(scores: np.ndarray, detector: str, chosen: tuple[int, int], title: str) -> go.Figure:
    """One detector's scores [layers, heads] as a grid, layer 0 on top, the chosen head outlined;
    the numbers are written in while the cells are wide enough to read them."""
    L, H = scores.shape
    annotate = H <= 16
    name = detector.replace("_", " ")
    fig = go.Figure(
        go.Heatmap(
            z=scores, x=list(range(H)), y=list(range(L)), colorscale="Purples", zmin=0.0, zmax=1.0, xgap=2, ygap=2,
            text=[[f"{v:.2f}" for v in row] for row in scores] if annotate else None,
            texttemplate="%{text}" if annotate else None, textfont=dict(size=15),
            colorbar=dict(title=dict(text="score", side="right", font=FONT)),
            hovertemplate=f"%{{y}} · %{{x}}<br>{html.escape(name)}: %{{z:.3f}}<extra></extra>",  # the tick texts
        )
    )
    layer, head = chosen
    fig.add_shape(type="rect", x0=head - 0.5, x1=head + 0.5, y0=layer - 0.5, y1=layer + 0.5,
                  line=dict(color=HIGHLIGHT, width=4))
    axis = dict(tickmode="array", showgrid=False, zeroline=False, tickfont=FONT)
    fig.update_xaxes(tickvals=list(range(H)), ticktext=[f"head {h}" for h in range(H)], side="top", **axis)
    fig.update_yaxes(tickvals=list(range(L)), ticktext=[f"layer {l}" for l in range(L)], autorange="reversed", **axis)
    fig.update_layout(
        title=title, font=FONT, hoverlabel=HOVER, plot_bgcolor="white",
        height=max(260, min(720, 150 + 48 * L)), margin=dict(l=20, r=20, t=100, b=20),
    )
    return fig


def value_mix_figure(mix: ValueMix) -> go.Figure:
    """The rows of weight × value, a gap, then their sum: the head's output for the query."""
    z = np.vstack([mix.rows, np.full(mix.rows.shape[1], np.nan), mix.output])
    names = [_plotly_text(label) for label in mix.labels] + [" ", "= output"]
    limit = float(np.nanmax(np.abs(z))) or 1.0
    annotate = z.shape[1] <= 16  # a full-width row has room for 16 numbers
    fig = go.Figure(
        go.Heatmap(
            z=z, y=names, colorscale="RdBu", zmin=-limit, zmax=limit, hoverongaps=False,
            text=[["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in z] if annotate else None,
            texttemplate="%{text}" if annotate else None, textfont=dict(size=12), xgap=1, ygap=1,
            colorbar=dict(title=dict(text="value", side="right", font=FONT)),
            hovertemplate="%{y}<br>dimension %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(type="category", autorange="reversed", tickfont=TOKEN_FONT)
    fig.update_xaxes(title="dimension of the head's vectors", title_font=FONT)
    fig.update_layout(
        font=FONT, height=140 + 30 * len(names), margin=dict(l=20, r=20, t=30, b=20),
        plot_bgcolor="white",
    )
    return fig


# --- the Model view ---------------------------------------------------------------------

CONFIG_MEANINGS = {
    "vocab_size": "different tokens it knows",
    "block_size": "context: the most tokens it reads at once",
    "n_layer": "blocks, one after the other",
    "n_head": "attention heads in each block",
    "n_embd": "numbers that describe each token (the width)",
    "dropout": "share of activations switched off while training",
    "bias": "Linear layers and LayerNorms have biases",
}


def si(value: float, unit: str = "") -> str:
    """3 significant digits with a k/M/G/T prefix: 124 M, 1.49 G."""
    for prefix, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def _config_value(value) -> str:
    return str(value) if isinstance(value, (bool, float)) else f"{value:,}"


def config_rows(config: GPTConfig) -> list[dict]:
    values = config.to_dict()
    rows = [
        {"setting": name, "value": _config_value(values[name]), "meaning": meaning}
        for name, meaning in CONFIG_MEANINGS.items()
    ]
    rows.append({"setting": "head size", "value": f"{config.n_embd // config.n_head:,}",
                 "meaning": "n_embd / n_head: the length of each head's q, k and v"})
    return rows


def size_estimates(config: GPTConfig) -> dict[str, str]:
    """What the model costs: memory, and arithmetic per token, from lm.model's formulas."""
    n = parameter_count(config)
    return {
        "Parameters": si(n),
        "Weights (fp32)": si(4 * n, "B"),
        "Training memory": si(training_memory_bytes(config), "B"),
        "Forward FLOPs": si(flops_per_token(config, training=False)),
        "Training FLOPs": si(flops_per_token(config, training=True)),
    }


def parameter_figure(config: GPTConfig) -> go.Figure:
    """Where the parameters are: one bar per part of the model."""
    parts = parameter_breakdown(config)
    total = sum(parts.values())
    names = list(parts)[::-1]  # plotly draws the first bar at the bottom
    counts = [parts[name] for name in names]
    fig = go.Figure(
        go.Bar(
            x=counts, y=names, orientation="h", marker_color="#4263eb",
            text=[f"{si(c)} · {c / total:.0%}" for c in counts], textposition="auto",
            hovertemplate="%{y}: %{x:,} parameters<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Where the {si(total)} parameters are", font=FONT, height=340,
        xaxis=dict(title=dict(text="parameters", font=FONT)), margin=dict(l=20, r=20, t=60, b=40),
    )
    return fig


_BOX = (
    "border:2px solid {border};background:{fill};border-radius:8px;padding:6px 14px;"
    "text-align:center;min-width:22em;color:#212529"
)
_COLOURS = {
    "io": ("#868e96", "#f1f3f5"),
    "embed": ("#f08c00", "#fff3bf"),
    "norm": ("#adb5bd", "#f8f9fa"),
    "attention": ("#1c7ed6", "#d0ebff"),
    "mlp": ("#2f9e44", "#d3f9d8"),
    "add": ("#868e96", "#ffffff"),
    "head": ("#c2255c", "#ffdeeb"),
}


def _box(kind: str, title: str, detail: str = "") -> str:
    border, fill = _COLOURS[kind]
    detail_html = f'<div style="font-size:.85em;color:#495057">{html.escape(detail)}</div>' if detail else ""
    return f'<div style="{_BOX.format(border=border, fill=fill)}"><b>{html.escape(title)}</b>{detail_html}</div>'


def _arrow(shape: str = "") -> str:
    note = f' <span style="font-size:.8em;color:#495057">{html.escape(shape)}</span>' if shape else ""
    return f'<div style="font-size:1.3em;line-height:1.2;color:#495057">↓{note}</div>'


def block_diagram_html(config: GPTConfig) -> str:
    """The model drawn top to bottom with its real sizes: tokens in, one block (repeated
    n_layer times) with its two residual adds, next-token probabilities out."""
    C, V, T, L, H = config.n_embd, config.vocab_size, config.block_size, config.n_layer, config.n_head
    parts = parameter_breakdown(config)
    per_block = (parts["attention"] + parts["MLP"]) // L + 2 * C * (1 + int(config.bias))  # + its 2 LayerNorms
    width = f"T × {C:,}"
    block = "".join([
        _box("norm", "LayerNorm", f"{C:,} numbers rescaled per token"),
        _arrow(),
        _box("attention", f"Causal self-attention: {H} heads × {C // H}",
             f"q, k, v: {C:,} → 3 × {C:,} · mix heads: {C:,} → {C:,}"),
        _arrow(),
        _box("add", "+ the block's input", "residual: attention adds to the stream, never replaces it"),
        _arrow(width),
        _box("norm", "LayerNorm"),
        _arrow(),
        _box("mlp", f"MLP: {C:,} → {4 * C:,} → GELU → {C:,}", "each token on its own"),
        _arrow(),
        _box("add", "+ the input of the MLP", "residual again"),
    ])
    repeated = (
        '<div style="border:2px dashed #495057;border-radius:12px;padding:10px 18px;display:flex;'
        'flex-direction:column;align-items:center;gap:2px">'
        f'<div style="font-weight:bold;margin-bottom:4px">× {L} blocks · {si(per_block)} parameters each</div>'
        f"{block}</div>"
    )
    flow = [
        _box("io", f"Token ids: T tokens, T ≤ {T:,}"),
        _arrow(),
        _box("embed", "Token embedding + position embedding",
             f"{V:,} × {C:,} table + {T:,} × {C:,} table"),
        _arrow(width),
        repeated,
        _arrow(width),
        _box("norm", "Final LayerNorm"),
        _arrow(),
        _box("head", f"Head: {C:,} → {V:,}", "reuses the token embedding's table (tied weights)"),
        _arrow(f"T × {V:,} logits"),
        _box("io", "Softmax → next-token probabilities", f"for each position, one over each of the {V:,} tokens"),
    ]
    return (
        '<div class="block-diagram" style="display:flex;flex-direction:column;align-items:center;gap:2px;'
        f'font-size:1.05rem;padding:8px">{"".join(flow)}</div>'
    )
