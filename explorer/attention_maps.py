"""Attention drawn as maps: one head's weights or scores over the tokens, every head of a
model at a glance, and the detectors' scores per head. Data in, plotly figures out."""

from __future__ import annotations

import html
import math

import numpy as np
import plotly.graph_objects as go

from explorer.attention_view import AttentionRun, LayerSteps
from explorer.charts import PROJECTOR_FONT

ANNOTATE_MAX = 12  # write the numbers into the cells up to this many tokens (cells wide enough)
# Every token on a map is labelled. A label is 16 px tall (TOKEN_FONT), so a row needs 18 px or the
# labels print into each other. A full-width map of 48 rows is 864 px plus its title and key labels:
# about one 1080-pixel screen. A map beside another (two models, a step-through) or on a projector
# has about 300 px for its rows under a 470-px chart's title and slanted key labels: 16 rows.
# Longer texts are shown a window of that many tokens at a time (tokens_window), never thinned out.
ROW_PX = 18
LABELLED = 48
LABELLED_SMALL = 16
GRID_CELLS = 64  # each small map of the all-heads grid is at most this many cells a side
HIGHLIGHT = "#e8590c"
MASKED_GREY = "#ced4da"
FONT = PROJECTOR_FONT | dict(color="#212529")  # the theme's grey text is too faint on a projector
TOKEN_FONT = dict(size=16, color="#212529")
HOVER = dict(font=dict(size=16))


def tokens_window(T: int, limit: int, end: int | None = None) -> slice:
    """The `limit` tokens ending at `end` (default the last): what a map of a long text shows."""
    end = T - 1 if end is None else min(max(end, limit - 1), T - 1)
    return slice(max(0, end + 1 - limit), end + 1)


def plotly_text(label: str) -> str:
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
    start: int = 0,
) -> go.Figure:
    """A T×T map of tokens `start`… of the text. Each position is its own category ("#7 ·the"), so
    a repeated token gets its own row and column and the hover names it without a string per cell;
    every tick shows its token. `masked` cells are drawn grey as −∞; `blank` cells get no number."""
    T = len(labels)
    names = [plotly_text(label) for label in labels]
    positions = [f"#{start + i} {name}" for i, name in enumerate(names)]  # unique: equal tokens never merge
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
        fig.add_trace(_masked_cells(masked, positions, annotate))
    tick_axis = dict(type="category", tickmode="array", tickvals=positions, ticktext=names, tickfont=TOKEN_FONT)
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
        height=max(420 if compact else 480, 200 + ROW_PX * T),
    )
    return fig


def _masked_cells(masked: np.ndarray, positions: list[str], annotate: bool) -> go.Heatmap:
    """The grey −∞ cells laid over a map of scores."""
    gap = 1 if annotate else 0
    return go.Heatmap(
        z=np.where(masked, 1.0, np.nan), x=positions, y=positions,
        colorscale=[[0, MASKED_GREY], [1, MASKED_GREY]], showscale=False, hoverongaps=False,
        text=np.where(masked, "−∞", "").tolist() if annotate else None,
        texttemplate="%{text}" if annotate else None,
        textfont=dict(size=13, color="#495057"), xgap=gap, ygap=gap,
        hovertemplate="query %{y}<br>key %{x}<br>masked: the key comes later (−∞)<extra></extra>",
    )


def attention_figure(
    run: AttentionRun, layer: int, head: int, title: str, highlight_row: int | None = None, compact: bool = False,
    window: slice | None = None,
) -> go.Figure:
    """One head's weights: row i is how query i spreads its attention over keys 0…i; only the
    tokens in `window` (see tokens_window) when the text is longer than a map can label."""
    return weights_figure(run.weights[layer, head], run.labels, title, highlight_row, compact, window)


def weights_figure(
    weights: np.ndarray, labels: tuple[str, ...], title: str, highlight_row: int | None = None, compact: bool = False,
    window: slice | None = None,
) -> go.Figure:
    """A [T, T] map of attention weights over the tokens' labels (for a snapshot saved in training too);
    without a `window`, the last tokens a map of its size can label (see tokens_window)."""
    window = window or tokens_window(len(labels), LABELLED_SMALL if compact else LABELLED)
    T = len(labels[window])
    return _token_heatmap(
        weights[window, window], labels[window], title=title, value_name="weight", colorscale="Blues", zmin=0.0,
        zmax=1.0, blank=np.triu(np.ones((T, T), dtype=bool), 1), compact=compact, start=window.start,
        highlight_row=None if highlight_row is None else highlight_row - window.start,
    )


def scores_figure(
    steps: LayerSteps, head: int, query: int, masked: bool = False, window: slice | None = None
) -> go.Figure:
    """The scores q·k/√d, before the mask (every pair) or after it (the future is −∞, grey)."""
    window = window or slice(0, len(steps.labels))
    scores = steps.scores[head][window, window]
    limit = float(np.abs(scores).max()) or 1.0
    return _token_heatmap(
        scores, steps.labels[window],
        title="after the causal mask: the future is −∞" if masked else "scores q·k/√d: every query with every key",
        value_name="score", colorscale="RdBu", zmin=-limit, zmax=limit,
        masked=np.isinf(steps.masked(head)[window, window]) if masked else None,
        highlight_row=query - window.start, compact=True, start=window.start,
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
