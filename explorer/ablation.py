"""Ablation's figures: what switching heads off (lm.inspect.predict) did to the loss on a
text and to the next-token probabilities, drawn against the model with all its heads."""

from __future__ import annotations

import html
from typing import Callable

import numpy as np
import plotly.graph_objects as go

from explorer.charts import PROJECTOR_FONT
from lm.inspect import Prediction

KEPT_COLOUR, ABLATED_COLOUR = "#adb5bd", "#e8590c"
WORSE, BETTER = "#e03131", "#2f9e44"


def answer_loss(prediction: Prediction, start: int = 0) -> float:
    """The mean loss of the tokens from losses[start] on: a task's answer, where it trains."""
    losses = prediction.losses[start:]
    return float(losses.mean()) if len(losses) else float("nan")


def top_tokens(before: Prediction, after: Prediction, count: int = 8) -> list[int]:
    """The ids most likely next with all heads or with the ablation, the likeliest first."""
    both = np.maximum(before.next_probs, after.next_probs)
    return [int(i) for i in np.argsort(-both, kind="stable")[:count]]


def next_token_figure(before: Prediction, after: Prediction, label: Callable[[int], str], title: str) -> go.Figure:
    """The likeliest next tokens (`label` names an id), each with its probability before (grey)
    and after (orange) the ablation."""
    ids = top_tokens(before, after)
    names = [html.escape(label(i)) for i in ids]
    rows = list(range(len(ids)))
    fig = go.Figure()
    for name, prediction, colour in (("all heads", before, KEPT_COLOUR), ("heads switched off", after, ABLATED_COLOUR)):
        values = [float(prediction.next_probs[i]) for i in ids]
        fig.add_trace(
            go.Bar(
                x=values, y=rows, name=name, orientation="h", marker_color=colour,
                text=[f"{v:.1%}" for v in values], textposition="outside", cliponaxis=False,
                textfont=dict(size=16, color="#212529"),
                customdata=names,
                hovertemplate=f"%{{customdata}}: %{{x:.2%}}<extra>{name}</extra>",
            )
        )
    top = max(float(before.next_probs[ids].max()), float(after.next_probs[ids].max()))
    fig.update_layout(
        title=title, barmode="group", bargap=0.25, font=PROJECTOR_FONT, height=150 + 48 * len(ids),
        margin=dict(l=20, r=90, t=110, b=50),
        legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0, font=dict(size=16)),
        xaxis=dict(title="probability of coming next", tickformat=".0%", range=[0, min(1.0, top * 1.2) or 1.0]),
        yaxis=dict(tickvals=rows, ticktext=names, autorange="reversed",
                   tickfont=dict(family="monospace", size=18), automargin=True),
    )
    return fig


def loss_change_figure(before: Prediction, after: Prediction, labels: list[str]) -> go.Figure:
    """For each token after the first: how much more (red) or less (green) surprising it became."""
    change = after.losses - before.losses
    names = [f"#{j + 1} {html.escape(label)}" for j, label in enumerate(labels[1:])]
    fig = go.Figure(
        go.Bar(
            x=list(range(len(change))), y=change, marker_color=[WORSE if c > 0 else BETTER for c in change],
            customdata=[[n, float(b), float(a)] for n, b, a in zip(names, before.losses, after.losses)],
            hovertemplate="%{customdata[0]}<br>loss %{customdata[1]:.2f} → %{customdata[2]:.2f}"
            "<br>change %{y:+.2f}<extra></extra>",
        )
    )
    step = -(-len(names) // 32)  # at most 32 slanted labels: 14-px labels need ~14 px each on a 900-px axis
    fig.update_xaxes(tickmode="array", tickvals=list(range(0, len(names), step)), ticktext=names[::step],
                     tickangle=-60, tickfont=dict(family="monospace", size=14))
    fig.update_layout(
        title="Each token's loss with the heads off minus with them on (red: harder to predict)",
        font=PROJECTOR_FONT, height=420, margin=dict(l=70, r=20, t=70, b=20),
        yaxis=dict(title="change in loss (nats)", zeroline=True, zerolinewidth=2, zerolinecolor="#495057"),
    )
    return fig
