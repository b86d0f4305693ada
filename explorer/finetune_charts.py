"""What the Fine-tune page draws, as pure functions of a fine-tune run's records (metrics.jsonl
lines, evaluation.json): accuracy curves for classification, the reward margin and the chosen and
rejected log-probabilities for DPO, exact match for instruction tuning, the confusion matrix, and
one message's class probabilities. Data in, figure out: no server needed."""

from __future__ import annotations

import plotly.graph_objects as go

from explorer.charts import PROJECTOR_FONT
from explorer.training_view import MAX_POINTS, TRAIN_COLOUR, VAL_COLOUR, curve, curve_layout

CHOSEN_COLOUR, REJECTED_COLOUR, MARGIN_COLOUR = "#2f9e44", "#e03131", "#7048e8"
HEIGHT = 400  # under a run's title bar and tabs, the whole chart on a 720-pixel projector
CURVES = {  # a metrics.jsonl key: what its curve is called
    "train_accuracy": "training accuracy (the batches it learns from)",
    "val_accuracy": "validation accuracy (messages it never trains on)",
    "reward_margin": "training batches",
    "val_reward_margin": "held-out pairs",
    "chosen_logp": "chosen answer",
    "rejected_logp": "rejected answer",
    "val_exact_match": "held-out prompts answered exactly",
}


def has(metrics: list[dict], key: str) -> bool:
    return any(isinstance(record.get(key), (int, float)) for record in metrics)


def _lines(metrics: list[dict], keys: dict[str, str], max_points: int) -> go.Figure:
    """One line per key that has values (key: colour); markers on curves logged only at evaluations."""
    fig = go.Figure()
    for key, colour in keys.items():
        steps, values = curve(metrics, key, max_points)
        if steps:
            fig.add_trace(go.Scatter(x=steps, y=values, name=CURVES[key], mode="lines+markers" if len(steps) < 60 else "lines",
                                     line=dict(color=colour, width=3), marker=dict(size=8)))
    return fig


def accuracy_figure(metrics: list[dict], labels: int = 2, max_points: int = MAX_POINTS) -> go.Figure:
    """Classification accuracy on training batches and on the validation split, 0 to 100%,
    with what guessing the classes at random scores (a balanced split: one in `labels`)."""
    fig = _lines(metrics, {"train_accuracy": TRAIN_COLOUR, "val_accuracy": VAL_COLOUR}, max_points)
    fig.add_hline(y=1 / labels, line_dash="dot", line_color="#868e96",
                  annotation_text=f"guessing: {1 / labels:.0%}", annotation_position="bottom right")
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    return curve_layout(fig, "Accuracy: messages classified right", "accuracy", HEIGHT)


def exact_match_figure(metrics: list[dict], max_points: int = MAX_POINTS) -> go.Figure:
    fig = _lines(metrics, {"val_exact_match": VAL_COLOUR}, max_points)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    return curve_layout(fig, "Exact match: held-out prompts answered word for word", "exact match", HEIGHT)


def reward_margin_figure(metrics: list[dict], max_points: int = MAX_POINTS) -> go.Figure:
    """DPO's implicit reward of the chosen answer minus the rejected one's (beta times how much
    more the model prefers each than the reference copy does): above zero it prefers the chosen."""
    fig = _lines(metrics, {"reward_margin": MARGIN_COLOUR, "val_reward_margin": VAL_COLOUR}, max_points)
    fig.add_hline(y=0, line_dash="dot", line_color="#868e96",
                  annotation_text="no preference (the starting model)", annotation_position="bottom right")
    return curve_layout(fig, "Reward margin: how much more it prefers the chosen answer", "reward margin", HEIGHT)


def logp_figure(metrics: list[dict], max_points: int = MAX_POINTS) -> go.Figure:
    """The log-probability the model gives the chosen and the rejected answer (summed over the
    answer's tokens): DPO pushes them apart, often lowering both."""
    fig = _lines(metrics, {"chosen_logp": CHOSEN_COLOUR, "rejected_logp": REJECTED_COLOUR}, max_points)
    return curve_layout(fig, "Log-probability of each answer", "log-probability (nats)", HEIGHT)


def confusion_figure(labels: list[str], confusion: list[list[int]], title: str) -> go.Figure:
    """Rows the true class, columns the predicted one; each cell its count and its share of the row."""
    shares = [[count / max(1, sum(row)) for count in row] for row in confusion]
    text = [[f"{count:,}<br>{share:.0%}" for count, share in zip(row, share_row)] for row, share_row in zip(confusion, shares)]
    fig = go.Figure(go.Heatmap(
        z=shares, x=labels, y=labels, text=text, texttemplate="%{text}", textfont=dict(size=20),
        colorscale="Blues", zmin=0, zmax=1, showscale=False,
        hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>",
    ))
    fig.update_xaxes(title="predicted", side="bottom", type="category")
    fig.update_yaxes(title="true class", autorange="reversed", type="category")
    fig.update_layout(title=title, font=PROJECTOR_FONT, height=360, margin=dict(l=90, r=20, t=60, b=70))
    return fig


def probability_figure(predictions: list[tuple[str, float]]) -> go.Figure:
    """One message's class probabilities, the likeliest on top."""
    ordered = sorted(predictions, key=lambda p: p[1])
    fig = go.Figure(go.Bar(
        x=[p for _, p in ordered], y=[label for label, _ in ordered], orientation="h", marker_color=TRAIN_COLOUR,
        text=[f"{p:.1%}" for _, p in ordered], textposition="auto", hovertemplate="%{y}: %{x:.1%}<extra></extra>",
    ))
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title="probability")
    fig.update_yaxes(type="category")
    fig.update_layout(title="The model's answer", font=PROJECTOR_FONT, height=120 + 50 * len(ordered),
                      margin=dict(l=90, r=20, t=60, b=60))
    return fig
