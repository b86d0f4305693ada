"""One head drawn as lines, after bertviz: the tokens in two columns, the ones looking on the
left and the ones looked at on the right, a line from each to each as thick and dark as its
attention weight. On a projector it reads better than a matrix: one query's lines stand out.
Data in, plotly figure out."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from explorer.attention_maps import FONT, HIGHLIGHT, ROW_PX, TOKEN_FONT, plotly_text
from explorer.presenter import WEIGHTED

LEVELS = (0.01, 0.2, 0.4, 0.7)  # weights are drawn in bands from these upwards: a spread-out head is a faint web
BAND_WIDTH = (1, 2.5, 4.5, 7)
FAINT = "rgba(33, 102, 172, {alpha})"


def line_bands(weights: np.ndarray, rows: list[int]) -> list[tuple[int, list[tuple[int, int]]]]:
    """The (query, key) pairs of `rows` whose weight falls in each band, strongest band last."""
    bands = []
    edges = (*LEVELS, np.inf)
    for band, (low, high) in enumerate(zip(edges, edges[1:])):
        pairs = [(i, j) for i in rows for j in range(i + 1) if low <= weights[i, j] < high]
        bands.append((band, pairs))
    return bands


def _segments(pairs: list[tuple[int, int]]) -> tuple[list, list]:
    """One trace's x and y for many lines: each from (0, query) to (1, key), None between them."""
    xs, ys = [], []
    for i, j in pairs:
        xs += [0, 1, None]
        ys += [i, j, None]
    return xs, ys


def lines_figure(
    weights: np.ndarray, labels: tuple[str, ...], title: str, query: int | None = None, start: int = 0
) -> go.Figure:
    """A [T, T] head's weights as lines between two columns of the tokens `start`…; with `query`
    (an index into the text) that token's lines are orange and the others faint."""
    T = len(labels)
    focus = None if query is None else query - start
    others = [i for i in range(T) if i != focus]
    fig = go.Figure()
    for band, pairs in line_bands(weights, others):
        alpha = 0.15 if focus is not None else 0.25 + 0.2 * band
        xs, ys = _segments(pairs)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False, meta=WEIGHTED,
                                 line=dict(width=BAND_WIDTH[band], color=FAINT.format(alpha=alpha))))
    if focus is not None:
        for band, pairs in line_bands(weights, [focus]):
            xs, ys = _segments(pairs)
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False, meta=WEIGHTED,
                                     line=dict(width=BAND_WIDTH[band] + 1, color=HIGHLIGHT)))
    names = [plotly_text(label) for label in labels]
    for x, side, what in ((0, "middle left", "looking"), (1, "middle right", "looked at")):
        fig.add_trace(go.Scatter(
            x=[x] * T, y=list(range(T)), mode="markers+text", text=names, textposition=side, showlegend=False,
            textfont=TOKEN_FONT, marker=dict(size=7, color="#495057"),
            customdata=[f"#{start + i}" for i in range(T)],
            hovertemplate=f"%{{customdata}} %{{text}} ({what})<extra></extra>",
        ))
    hidden = dict(visible=False, fixedrange=True)
    fig.update_xaxes(range=[-0.9, 1.9], **hidden)
    fig.update_yaxes(range=[T - 0.5, -0.8], **hidden)  # the first token on top
    fig.add_annotation(x=0, y=-0.8, text="<b>query</b> (looking)", showarrow=False, yanchor="bottom", xanchor="right",
                       font=FONT)
    fig.add_annotation(x=1, y=-0.8, text="<b>key</b> (looked at)", showarrow=False, yanchor="bottom", xanchor="left",
                       font=FONT)
    fig.update_layout(title=title, font=FONT, plot_bgcolor="white", margin=dict(l=20, r=20, t=90, b=20),
                      height=max(420, 130 + ROW_PX * T))
    return fig
