"""Why the model wrote a token, as plotly figures: the distribution it was drawn from (the
model's probabilities beside what the sampling settings made of them), and where the last
token looked while the model chose it. Data in, figure out, so tests need no server."""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from explorer.charts import PROJECTOR_FONT
from explorer.generation_view import label_of
from lm.generate import Sampling, Step

RAW_COLOUR = "#adb5bd"
SAMPLED_COLOUR = "#1c7ed6"
CHOSEN_BAND = "#ffe066"


def describe_settings(settings: Sampling) -> str:
    if settings.temperature == 0:
        return "greedy (temperature 0)"
    top_k = f"top-k {settings.top_k:,}" if settings.top_k else "no top-k"
    top_p = f"top-p {settings.top_p:g}" if settings.top_p is not None and settings.top_p < 1 else "no top-p"
    return f"temperature {settings.temperature:g} · {top_k} · {top_p}"


@dataclass(frozen=True)
class Bar:
    label: str  # the token as token_label shows it, or "other N tokens"
    token_id: int | None  # None for the bar that sums every token not shown
    raw_prob: float  # the model's probability
    prob: float  # after temperature, top-k and top-p
    chosen: bool


def distribution_bars(step: Step, tokenizer) -> list[Bar]:
    """The model's most likely tokens at this step (and the drawn one, if it was not among
    them), plus one bar for the probability left to every other token."""
    shown = {c.id: (c.raw_prob, c.prob) for c in step.alternatives}
    shown.setdefault(step.token_id, (step.raw_prob, step.prob))
    bars = [Bar(label_of(tokenizer, i), i, raw, prob, i == step.token_id) for i, (raw, prob) in shown.items()]
    rest = tokenizer.vocab_size - len(bars)
    if rest > 0:
        raw_rest = max(0.0, 1 - sum(b.raw_prob for b in bars))
        prob_rest = max(0.0, 1 - sum(b.prob for b in bars))
        bars.append(Bar(f"other {rest:,} tokens", None, raw_rest, prob_rest, False))
    return bars


def distribution_figure(bars: list[Bar], settings: Sampling, position: int) -> go.Figure:
    """Horizontal bars, most likely on top: the model's probabilities (grey) beside what the
    sampling settings made of them (blue); the drawn token's row is shaded. Rows sit on a
    numeric axis with the token as tick text, so two tokens that look alike stay apart."""
    rows = list(range(len(bars)))
    labels = [html.escape(b.label) for b in bars]  # plotly reads tick text as HTML
    ticks = [f"<b>▶ {label}</b>" if b.chosen else label for label, b in zip(labels, bars)]
    hover = [f"{label} (id {b.token_id})" if b.token_id is not None else label for label, b in zip(labels, bars)]
    fig = go.Figure()
    for name, values, colour in (
        ("the model's probabilities", [b.raw_prob for b in bars], RAW_COLOUR),
        (f"after {describe_settings(settings)}", [b.prob for b in bars], SAMPLED_COLOUR),
    ):
        fig.add_trace(
            go.Bar(
                x=values, y=rows, name=name, orientation="h", marker_color=colour,
                text=[f"{v:.1%}" for v in values], textposition="outside", constraintext="none",
                textfont=dict(size=16, color="#212529"), cliponaxis=False,
                customdata=hover, hovertemplate="%{customdata}: %{x:.2%}<extra>" + html.escape(name) + "</extra>",
            )
        )
    for row, bar in zip(rows, bars):
        if bar.chosen:
            fig.add_hrect(y0=row - 0.5, y1=row + 0.5, fillcolor=CHOSEN_BAND, opacity=0.45, line_width=0, layer="below")
    top = max(max(b.raw_prob, b.prob) for b in bars)
    fig.update_layout(
        title=dict(text=f"Token {position}: what the model could have written (▶ drawn)", y=0.98, yanchor="top"),
        barmode="group",
        bargap=0.25,
        font=PROJECTOR_FONT,
        height=120 + 46 * len(bars),
        margin=dict(l=20, r=90, t=130, b=50),
        legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0, font=dict(size=16)),
        xaxis=dict(title="probability", tickformat=".0%", range=[0, min(1.0, top * 1.18)]),
        yaxis=dict(
            tickvals=rows, ticktext=ticks, autorange="reversed", tickfont=dict(family="monospace", size=18),
            automargin=True,
        ),
    )
    return fig


def attention_row_figure(rows: np.ndarray, labels: list[str], per_head: bool, title: str) -> go.Figure:
    """Where one query looks, [layers, heads, T] over the token labels: a row per layer
    (its heads averaged) or a row per head."""
    L, H, T = rows.shape
    z = rows.reshape(L * H, T) if per_head else rows.mean(axis=1)
    names = [f"layer {l} · head {h}" for l in range(L) for h in range(H)] if per_head else [f"layer {l}" for l in range(L)]
    columns = [f"#{j} {html.escape(label)}" for j, label in enumerate(labels)]  # unique, so equal tokens stay apart
    annotate = T <= 16 and len(names) <= 24
    fig = go.Figure(
        go.Heatmap(
            z=z, x=columns, y=names, colorscale="Blues", zmin=0.0, zmax=1.0, xgap=1, ygap=1,
            text=[[f"{v:.2f}" for v in row] for row in z] if annotate else None,
            texttemplate="%{text}" if annotate else None, textfont=dict(size=13),
            colorbar=dict(title=dict(text="weight", side="right")),
            hovertemplate="%{y}<br>looks at %{x}: %{z:.3f}<extra></extra>",
        )
    )
    step = max(1, T // 40)
    fig.update_xaxes(type="category", tickmode="array", tickvals=columns[::step],
                     ticktext=[html.escape(label) for label in labels][::step], tickangle=-60,
                     tickfont=dict(family="monospace", size=16))
    fig.update_yaxes(type="category", autorange="reversed", tickfont=dict(size=16))
    fig.update_layout(title=title, font=PROJECTOR_FONT, height=160 + 32 * len(names) + 6 * min(T, 40),
                      margin=dict(l=20, r=20, t=70, b=20))
    return fig
