"""What the Train page draws, as pure functions of a run's records (metrics.jsonl lines):
the loss, task-accuracy, learning-rate and gradient-norm charts, several runs' losses overlaid, progress
and time-left text, and the table of runs. Data in, figure or text out: no server needed."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import plotly.colors
import plotly.graph_objects as go

from explorer.charts import PROJECTOR_FONT
from lm.estimate import eta_seconds

MAX_POINTS = 600  # per curve: a browser redrawing every second stays smooth
TRAIN_COLOUR, VAL_COLOUR, LR_COLOUR, GRAD_COLOUR = "#1c7ed6", "#e8590c", "#2f9e44", "#7048e8"
ACCURACY_COLOUR = "#c2255c"
BALANCE_COLOUR = "#f08c00"
LOSS_FORMAT = "%.4g"  # the runs table's losses: 1.235, and a tiny one 2.3e-05 rather than 0
STATES = {  # state: (label, st.badge colour)
    "starting": ("⏳ starting", "blue"),
    "running": ("▶️ running", "green"),
    "finished": ("✅ finished", "green"),
    "stopped": ("⏹️ stopped", "gray"),
    "failed": ("❌ failed", "red"),
    "died": ("💀 died", "red"),
}
# At the foot of the figure, under the axis title: above the plot it ran into a long title on a projector.
LEGEND = dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0, font=dict(size=16))


def state_label(state: str) -> str:
    return STATES.get(state, (state, "gray"))[0]


def series(metrics: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the records that have a finite `key` (val_loss is only on eval steps)."""
    points = [(r["step"], float(r[key])) for r in metrics if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return [s for s, _ in points], [v for _, v in points]


def downsample_indices(values: list[float], max_points: int = MAX_POINTS) -> list[int]:
    """Which points of a long curve to draw: about `max_points`, always the first and the
    last, and each stretch's lowest and highest value, so the minimum and spikes survive."""
    n = len(values)
    if n <= max_points:
        return list(range(n))
    buckets = max(1, (max_points - 2) // 2)
    edges = [1 + (n - 2) * i // buckets for i in range(buckets + 1)]
    keep = {0, n - 1}
    for start, end in zip(edges, edges[1:]):
        if end > start:
            stretch = range(start, end)
            keep.add(min(stretch, key=values.__getitem__))
            keep.add(max(stretch, key=values.__getitem__))
    return sorted(keep)


def curve(metrics: list[dict], key: str, max_points: int) -> tuple[list[int], list[float]]:
    steps, values = series(metrics, key)
    keep = downsample_indices(values, max_points)
    return [steps[i] for i in keep], [values[i] for i in keep]


def curve_layout(fig: go.Figure, title: str, y_title: str, height: int) -> go.Figure:
    fig.update_layout(
        title=title, xaxis_title="training step", yaxis_title=y_title, font=PROJECTOR_FONT, height=height,
        margin=dict(l=70, r=20, t=60, b=120), legend=LEGEND, hovermode="x unified",
    )
    return fig


def loss_figure(metrics: list[dict], uniform_loss: float | None = None, max_points: int = MAX_POINTS) -> go.Figure:
    """Training loss (one batch at a time, noisy) and validation loss (held-out text) on one
    chart; `uniform_loss` (ln of the vocabulary size) marks what a blind guess scores."""
    fig = go.Figure()
    steps, values = curve(metrics, "train_loss", max_points)
    fig.add_trace(go.Scatter(x=steps, y=values, name="training loss", mode="lines", line=dict(color=TRAIN_COLOUR, width=3)))
    steps, values = curve(metrics, "val_loss", max_points)
    fig.add_trace(
        go.Scatter(
            x=steps, y=values, name="validation loss (text it never trains on)", mode="lines+markers",
            line=dict(color=VAL_COLOUR, width=3), marker=dict(size=10),
        )
    )
    if uniform_loss is not None:
        fig.add_hline(
            y=uniform_loss, line_dash="dot", line_color="#868e96",
            annotation_text=f"a blind guess: {uniform_loss:.2f}", annotation_position="top right",
        )
    return curve_layout(fig, "Loss: how surprised the model is by the next token", "loss (nats)", 440)


def metric_figure(metrics: list[dict], key: str, title: str, y_title: str, colour: str, max_points: int = MAX_POINTS) -> go.Figure:
    steps, values = curve(metrics, key, max_points)
    fig = go.Figure(go.Scatter(x=steps, y=values, name=y_title, mode="lines", line=dict(color=colour, width=3)))
    fig.update_yaxes(tickformat=".2~g", rangemode="tozero")
    return curve_layout(fig, title, y_title, 340)


def lr_figure(metrics: list[dict]) -> go.Figure:
    return metric_figure(metrics, "lr", "Learning rate: warm up, then decay", "learning rate", LR_COLOUR)


def grad_norm_figure(metrics: list[dict]) -> go.Figure:
    return metric_figure(metrics, "grad_norm", "Gradient norm: each update's size", "gradient norm", GRAD_COLOUR)


def has_task_accuracy(metrics: list[dict]) -> bool:
    return any("task_accuracy" in r for r in metrics)


def accuracy_figure(metrics: list[dict], max_points: int = MAX_POINTS) -> go.Figure:
    """A synthetic task's exact-match accuracy on held-out examples, 0 to 100%."""
    fig = metric_figure(
        metrics, "task_accuracy", "Task accuracy: held-out examples answered exactly right", "accuracy",
        ACCURACY_COLOUR, max_points,
    )
    fig.update_traces(mode="lines+markers", marker=dict(size=10))
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    return fig


def has_balance_loss(metrics: list[dict]) -> bool:
    return any("balance_loss" in r for r in metrics)


def balance_figure(metrics: list[dict], max_points: int = MAX_POINTS) -> go.Figure:
    """A mixture of experts' load-balancing loss (lm.moe): 1 when the router spreads the tokens
    evenly over the experts, up to the number of experts when one takes them all."""
    fig = metric_figure(metrics, "balance_loss", "Expert load balance: 1 is an even share", "balance loss",
                        BALANCE_COLOUR, max_points)
    fig.add_hline(y=1, line_dash="dot", line_color="#495057")
    fig.update_yaxes(rangemode="normal", tickformat=".3~f")  # it stays near 1: show where
    return fig


def overlay_figure(curves: dict[str, list[dict]], max_points: int = MAX_POINTS) -> go.Figure:
    """Several runs' losses on one chart: each run one colour, training solid, validation dashed."""
    palette = plotly.colors.qualitative.D3
    fig = go.Figure()
    for i, (name, metrics) in enumerate(curves.items()):
        colour = palette[i % len(palette)]
        for key, label, dash, mode in (("train_loss", "training", "solid", "lines"), ("val_loss", "validation", "dash", "lines+markers")):
            steps, values = curve(metrics, key, max_points)
            fig.add_trace(
                go.Scatter(
                    x=steps, y=values, name=f"{name} · {label}", legendgroup=name, mode=mode,
                    line=dict(color=colour, width=3 if dash == "solid" else 2.5, dash=dash), marker=dict(size=8),
                )
            )
    curve_layout(fig, "Loss of each run (solid: training, dashed: validation)", "loss (nats)", 480 + 24 * len(curves))
    fig.update_layout(  # below the plot: a legend of many runs would cover the title
        legend=dict(orientation="h", y=-0.18, yanchor="top", x=0, font=dict(size=16)),
        margin=dict(l=70, r=20, t=60, b=60 + 24 * len(curves)),
    )
    return fig


# --- progress ----------------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{seconds / 86400:.1f} days"


def rough_duration(seconds: float) -> str:
    """An estimate as precise as it is: "6 min", not "6 min 05 s" (it fits a metric's width too)."""
    if seconds < 60:
        return format_duration(seconds)
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return format_duration(round(seconds / 60) * 60)


def format_bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}" if n < 10 * size else f"{n / size:,.0f} {unit}"
    return f"{n:,.0f} bytes"


def progress_text(step: int, max_steps: int | None, metrics: list[dict], active: bool) -> str:
    """"Step 120 of 600 · 9,800 tokens/s · about 1 min 10 s left" (what is known so far)."""
    parts = [f"Step {step:,} of {max_steps:,}" if max_steps else f"Step {step:,}"]
    speeds = [r["tokens_per_s"] for r in metrics[-5:] if isinstance(r.get("tokens_per_s"), (int, float))]
    if speeds:
        parts.append(f"{statistics.median(speeds):,.0f} tokens/s")
    eta = eta_seconds(metrics, max_steps) if active and max_steps else None
    if eta is not None:
        parts.append(f"about {format_duration(eta)} left")
    return " · ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def describe_model(model: dict) -> str:
    """"2 layers × 64 wide, 2 heads" from a model's n_layer, n_embd and n_head ("" unless all are known)."""
    if not all(k in model for k in ("n_layer", "n_head", "n_embd")):
        return ""
    return f"{_count(model['n_layer'], 'layer')} × {model['n_embd']} wide, {_count(model['n_head'], 'head')}"


def _short_source(value: str | None) -> str:
    """A corpus or tokenizer as the table shows it: a name, or a file's name without its folder."""
    if not value:
        return ""
    return Path(value).name if ("/" in value or "\\" in value) else value


def runs_table(infos: list) -> list[dict]:
    """One row per run (explorer.runs.RunInfo, newest first), narrow enough for a projector: the
    model it trained and its best loss as the run recorded them, however it was started."""
    rows = []
    for info in infos:
        best = info.best_val_loss
        rows.append(
            {
                "run": info.name,
                "status": state_label(info.state),
                "step": f"{info.step:,} / {info.max_steps:,}" if info.max_steps else f"{info.step:,}",
                "best val loss": float(LOSS_FORMAT % best) if isinstance(best, (int, float)) and math.isfinite(best) else None,
                "model": describe_model(info.model),
                "context": info.model.get("block_size"),
                "data · tokenizer": " · ".join(filter(None, (_short_source(info.options.get(k)) for k in ("data", "tokenizer")))),
            }
        )
    return rows
