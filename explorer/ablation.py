"""Ablation: switch heads off and see what the model loses. A head is silenced by
zeroing its output before the heads are mixed (GPT.forward's head_mask), so the rest of
the model runs as it is; comparing the loss on a text and the next-token probabilities
with and without those heads shows what they were doing."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Callable

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F

from explorer.charts import PROJECTOR_FONT
from lm.model import GPT

KEPT_COLOUR, ABLATED_COLOUR = "#adb5bd", "#e8590c"
WORSE, BETTER = "#e03131", "#2f9e44"


def head_mask(n_layer: int, n_head: int, heads_off=(), layers_off=()) -> torch.Tensor:
    """[n_layer, n_head] of ones, with 0 for each (layer, head) in `heads_off` and every head of `layers_off`."""
    mask = torch.ones(n_layer, n_head)
    for layer, head in heads_off:
        mask[layer, head] = 0.0
    for layer in layers_off:
        mask[layer] = 0.0
    return mask


@dataclass(frozen=True)
class Prediction:
    """One forward pass over a text: each token's loss given those before it, and the
    probabilities of the token after the text."""

    losses: np.ndarray  # [T − 1]: losses[j] = −ln p(ids[j + 1] | ids[:j + 1])
    next_probs: np.ndarray  # [tokenizer vocabulary]

    @property
    def mean_loss(self) -> float:
        return float(self.losses.mean()) if len(self.losses) else float("nan")


@torch.no_grad()
def predict(model: GPT, ids: list[int], n_tokens: int, mask: torch.Tensor | None = None) -> Prediction:
    """The model on `ids` (at most block_size of them) with `mask` switching heads off. The
    next-token probabilities are over the tokenizer's `n_tokens` ids (a model's padded rows are no token).
    The model is only read: the mask is an argument, never a change to it."""
    if not 0 < len(ids) <= model.config.block_size:
        raise ValueError(f"need 1 to {model.config.block_size} tokens, got {len(ids)}")
    device = next(model.parameters()).device
    idx = torch.tensor([ids], device=device)
    logits = model(idx, head_mask=None if mask is None else mask.to(device)).logits[0, :, :n_tokens].float()
    losses = F.cross_entropy(logits[:-1], idx[0, 1:], reduction="none")
    return Prediction(losses.cpu().numpy(), torch.softmax(logits[-1], dim=-1).cpu().numpy())


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
    step = max(1, len(names) // 40)
    fig.update_xaxes(tickmode="array", tickvals=list(range(0, len(names), step)), ticktext=names[::step],
                     tickangle=-60, tickfont=dict(family="monospace", size=14))
    fig.update_layout(
        title="Each token's loss with the heads off minus with them on (red: harder to predict)",
        font=PROJECTOR_FONT, height=420, margin=dict(l=70, r=20, t=70, b=20),
        yaxis=dict(title="change in loss (nats)", zeroline=True, zerolinewidth=2, zerolinecolor="#495057"),
    )
    return fig
