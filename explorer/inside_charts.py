"""Figures for the Inside the model page: data from lm.lens, lm.patching and lm.embedding_map
in, plotly figures out."""

from __future__ import annotations

from typing import Callable

import numpy as np
import plotly.graph_objects as go

from explorer.attention_maps import FONT, HIGHLIGHT, HOVER, TOKEN_FONT, plotly_text
from lm.embedding_map import EmbeddingMap
from lm.lens import Attribution, LogitLens
from lm.patching import Patching

ANNOTATE_MAX = 16  # positions up to which each lens cell names its guess (wider cells are too narrow)
ROW_PX = 34
KIND_COLOURS = {"embeddings": "#868e96", "head": "#1c7ed6", "attention bias": "#a5d8ff", "MLP": "#f08c00",
                "norm bias": "#adb5bd", "final norm bias": "#ced4da"}
DIVERGING = "RdBu"  # blue: the patch brings the clean answer back; red: it pushes further away


def positions(labels: tuple[str, ...]) -> list[str]:
    """One category per position ("#3 ·the"), so a repeated token keeps its own column."""
    return [f"#{i} {plotly_text(label)}" for i, label in enumerate(labels)]


def token_axis(labels: tuple[str, ...]) -> dict:
    return dict(type="category", tickmode="array", tickvals=positions(labels),
                ticktext=[plotly_text(label) for label in labels], tickfont=TOKEN_FONT, tickangle=-60)


def short(label: str, chars: int = 5) -> str:
    """A label cut to fit a cell ("<|endoftext|>" → "<|en…"); the hover has it whole."""
    return label if len(label) <= chars else label[: chars - 1] + "…"


def lens_figure(lens: LogitLens, labels: tuple[str, ...], label_of: Callable[[int], str], title: str,
                marked_row: int | None = None, mark_label: str = "") -> go.Figure:
    """Layers × positions, coloured by the probability each layer gives the model's final
    prediction; hover for the layer's top guesses; `marked_row` outlined (e.g. the induction head's
    block) and tagged with `mark_label` on its top right corner."""
    rows, T = lens.final_probs.shape
    hover = [[f"after {lens.rows[r]}, at #{t} {plotly_text(labels[t])}:<br>"
              + "<br>".join(f"{plotly_text(label_of(int(i)))}  {p:.1%}"
                            for i, p in zip(lens.top_ids[r, t], lens.top_probs[r, t]))
              for t in range(T)] for r in range(rows)]
    annotate = T <= ANNOTATE_MAX
    fig = go.Figure(go.Heatmap(
        z=lens.final_probs, x=positions(labels), y=list(lens.rows), zmin=0, zmax=1, colorscale="Blues",
        text=[[plotly_text(short(label_of(int(lens.top_ids[r, t, 0])))) for t in range(T)] for r in range(rows)]
        if annotate else None,
        texttemplate="%{text}" if annotate else None, textfont=dict(size=13),
        hovertext=hover, hovertemplate="%{hovertext}<extra></extra>", xgap=1, ygap=1,
        colorbar=dict(title=dict(text="p(final guess)", side="right", font=FONT)),
    ))
    if marked_row is not None:
        fig.add_shape(type="rect", x0=-0.5, x1=T - 0.5, y0=marked_row - 0.5, y1=marked_row + 0.5,
                      line=dict(color=HIGHLIGHT, width=3))
        if mark_label:
            fig.add_annotation(x=T - 0.5, y=marked_row - 0.5, text=mark_label, showarrow=False, xanchor="right",
                               yanchor="bottom", bgcolor=HIGHLIGHT, font=dict(color="white", size=13))
    fig.update_xaxes(title=dict(text="position: the token the guess is made after", font=FONT), **token_axis(labels))
    fig.update_yaxes(title=dict(text="stopped after", font=FONT), autorange="reversed", type="category")
    fig.update_layout(title=title, font=FONT, hoverlabel=HOVER, margin=dict(l=20, r=20, t=60, b=20),
                      height=max(360, 220 + ROW_PX * rows))
    return fig


def attribution_figure(found: Attribution, title: str) -> go.Figure:
    """One bar per part of the residual stream, in the model's order, coloured by kind."""
    fig = go.Figure()
    for kind, colour in KIND_COLOURS.items():
        chosen = [i for i, k in enumerate(found.kinds) if k == kind]
        if chosen:
            fig.add_trace(go.Bar(
                x=[found.labels[i] for i in chosen], y=found.values[chosen], name=kind, marker_color=colour,
                hovertemplate="%{x}: %{y:+.3f}<extra></extra>",
            ))
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=list(found.labels), tickangle=-60)
    fig.update_yaxes(title=dict(text="direct push on the logit", font=FONT), zeroline=True, zerolinewidth=2)
    fig.update_layout(title=title, font=FONT, hoverlabel=HOVER, barmode="overlay", height=460,
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
                      margin=dict(l=20, r=20, t=90, b=20))
    return fig


def _share_heatmap(z: np.ndarray, x: list[str], y: list[str], hover: str) -> go.Heatmap:
    """Shares restored, 0 white, clean-answer blue; clipped to ±1.2 so one outlier keeps the rest readable."""
    return go.Heatmap(z=z, x=x, y=y, zmin=-1.2, zmax=1.2, zmid=0, colorscale=DIVERGING, xgap=1, ygap=1,
                      hovertemplate=hover + "<br>restored %{z:.2f}<extra></extra>",
                      colorbar=dict(title=dict(text="share restored", side="right", font=FONT)))


def residual_patching_figure(found: Patching, labels: tuple[str, ...], title: str) -> go.Figure:
    """Layers × positions: the share of the clean logit difference restored by copying the clean
    residual stream into the corrupted run at that place; the changed positions outlined."""
    L, T = found.residual.shape
    x = positions(labels)
    fig = go.Figure(_share_heatmap(found.residual, x, [f"into block {layer}" for layer in range(L)],
                                   "%{y}, position %{x}"))
    for t in found.differ:
        fig.add_shape(type="rect", x0=t - 0.5, x1=t + 0.5, y0=-0.5, y1=L - 0.5, line=dict(color=HIGHLIGHT, width=3))
    fig.update_xaxes(title=dict(text="position (outlined: where the prompts differ)", font=FONT), **token_axis(labels))
    fig.update_yaxes(title=dict(text="residual stream", font=FONT), autorange="reversed", type="category")
    fig.update_layout(title=title, font=FONT, hoverlabel=HOVER, margin=dict(l=20, r=20, t=60, b=20),
                      height=max(340, 220 + ROW_PX * L))
    return fig


def head_patching_figure(found: Patching, title: str) -> go.Figure:
    """Layers × heads: the share restored by copying one head's clean output at every position."""
    L, H = found.heads.shape
    fig = go.Figure(_share_heatmap(found.heads, [f"head {h}" for h in range(H)], [f"layer {layer}" for layer in range(L)],
                                   "%{y}, %{x}"))
    if L * H <= 64:
        fig.update_traces(texttemplate="%{z:.2f}", textfont=dict(size=14))
    fig.update_xaxes(type="category")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(title=title, font=FONT, hoverlabel=HOVER, margin=dict(l=20, r=20, t=60, b=20),
                      height=max(300, 180 + ROW_PX * L))
    return fig


def embedding_figure(found: EmbeddingMap, shown: list[int], label_of: Callable[[int], str], chosen: int | None,
                     neighbours: list[int], title: str) -> go.Figure:
    """The tokens in `shown` as grey points on the first two principal axes; the chosen token and
    its nearest neighbours drawn on top, named."""
    fig = go.Figure(go.Scattergl(
        x=found.points[shown, 0], y=found.points[shown, 1], mode="markers", name="tokens",
        marker=dict(size=5, color="#adb5bd", opacity=0.6),
        text=[plotly_text(label_of(i)) for i in shown], hovertemplate="%{text}<extra></extra>",
    ))
    for ids, name, colour, size in ((neighbours, "nearest neighbours", "#1c7ed6", 10),
                                    ([chosen] if chosen is not None else [], "chosen token", HIGHLIGHT, 16)):
        if ids:
            fig.add_trace(go.Scatter(
                x=found.points[ids, 0], y=found.points[ids, 1], mode="markers+text", name=name,
                marker=dict(size=size, color=colour), text=[plotly_text(label_of(i)) for i in ids],
                textposition="top center", textfont=dict(size=15, color=colour), hovertemplate="%{text}<extra></extra>",
            ))
    first, second = found.explained
    fig.update_xaxes(title=dict(text=f"first principal axis ({first:.0%} of the spread)", font=FONT))
    fig.update_yaxes(title=dict(text=f"second ({second:.0%})", font=FONT))
    fig.update_layout(title=title, font=FONT, hoverlabel=HOVER, height=560, margin=dict(l=20, r=20, t=60, b=20),
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return fig
