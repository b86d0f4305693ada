"""Attention across training: reading the snapshots a run writes (a fixed probe text's
attention every few steps, and the head detectors' scores at each) and the chart that
lines a head's scores up with the loss curve.

The files and their formats: lm.run_folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from safetensors import SafetensorError
from safetensors.numpy import load_file

from explorer.charts import PROJECTOR_FONT
from explorer.training_view import LEGEND, TRAIN_COLOUR, VAL_COLOUR, downsample_indices, series
from lm.detectors import DETECTORS
from lm.run_folder import DETECTORS_FILE, SNAPSHOT_TENSOR, read_jsonl, read_probe, snapshot_path, snapshot_steps

DETECTOR_COLOURS = dict(zip(DETECTORS, ("#2f9e44", "#1098ad", "#c2255c", "#f08c00", "#7048e8")))
STEP_LINE = "#e8590c"
LOSSES = {"train_loss": ("training loss", TRAIN_COLOUR), "val_loss": ("validation loss", VAL_COLOUR)}


class SnapshotError(ValueError):
    """A snapshot file that cannot be read as one (lm.run_folder's format); the message says which and why."""


@dataclass(frozen=True)
class Snapshots:
    """What a run saved about its probe text: the tokens, and the steps with an attention snapshot."""

    folder: Path
    ids: list[int]
    tokens: list[str]
    steps: list[int]

    def path(self, step: int) -> Path:
        return snapshot_path(self.folder, step)


def find_snapshots(folder: Path) -> Snapshots | None:
    """The run's snapshots, or None when it has none (no probe.json, or no snapshot yet)."""
    probe, steps = read_probe(folder), snapshot_steps(folder)
    return Snapshots(folder, *probe, steps) if probe and steps else None


def load_snapshot(snapshots: Snapshots, step: int) -> np.ndarray:
    """The attention [n_layer, n_head, T, T] at `step`, as float32; SnapshotError if the file
    is unreadable or its shape does not match the probe."""
    path = snapshots.path(step)
    try:
        weights = load_file(path)[SNAPSHOT_TENSOR]
    except (OSError, SafetensorError, KeyError) as exc:
        raise SnapshotError(f"{path.name} cannot be read as an attention snapshot ({exc})") from exc
    T = len(snapshots.ids)
    if weights.ndim != 4 or weights.shape[2:] != (T, T):
        raise SnapshotError(f"{path.name} holds attention of shape {list(weights.shape)}, not [layers, heads, {T}, {T}]")
    return weights.astype(np.float32)


@dataclass(frozen=True)
class DetectorHistory:
    """Detector scores through training: steps [S] and, per detector, scores [S, n_layer, n_head]."""

    steps: list[int]
    scores: dict[str, np.ndarray]

    def at(self, step: int) -> dict[str, np.ndarray] | None:
        """Every detector's [n_layer, n_head] scores at `step`, if they were recorded then."""
        if step not in self.steps:
            return None
        row = self.steps.index(step)
        return {name: values[row] for name, values in self.scores.items()}


def read_detector_history(folder: Path) -> DetectorHistory:
    """detectors.jsonl, in step order; lines that are incomplete or shaped unlike the first are skipped."""
    steps, rows, shape = [], [], None
    for record in read_jsonl(folder / DETECTORS_FILE):
        try:
            step = int(record["step"])
            scores = np.array([record["scores"][name] for name in DETECTORS], dtype=np.float32)
        except (KeyError, TypeError, ValueError):
            continue
        if scores.ndim != 3 or scores.shape != (shape or scores.shape):
            continue
        shape = scores.shape
        steps.append(step)
        rows.append(scores)
    order = np.argsort(steps, kind="stable")
    stacked = np.stack([rows[i] for i in order]) if rows else np.zeros((0, len(DETECTORS), 0, 0), np.float32)
    return DetectorHistory([steps[i] for i in order], {name: stacked[:, d] for d, name in enumerate(DETECTORS)})


def nearest_step(steps: list[int], step: int) -> int:
    return min(steps, key=lambda s: (abs(s - step), s))


def even_steps(logged: list[int], snapshots: list[int]) -> dict[int, str] | None:
    """Each step's label on an axis that spaces the snapshots evenly, as the slider does, when
    they are too uneven for a linear one (Pythia's published checkpoints, 0, 256, 1,000 ...
    143,000, would crowd into its first pixels) and every logged step is one of them; else None."""
    gaps = np.diff(sorted(set(snapshots)))
    if len(gaps) < 2 or gaps.max() <= 20 * gaps.min() or not all(type(s) is int and s in snapshots for s in logged):
        return None
    return {s: f"{s:,}" for s in sorted(set(snapshots))}


def history_figure(
    metrics: list[dict], history: DetectorHistory, layer: int, head: int, step: int, max_points: int = 600
) -> go.Figure:
    """The loss curve on top and the chosen head's detector scores below, on one step axis,
    with a line at `step`: a head that starts copying shows up at the same x as the loss drop."""
    curves = {key: series(metrics, key) for key in LOSSES}
    labels = even_steps([step for steps, _ in curves.values() for step in steps], history.steps)

    def place(steps: list[int]) -> list:
        return [labels[s] for s in steps] if labels else list(steps)

    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12, row_heights=[0.45, 0.55],
        subplot_titles=("Loss", f"Layer {layer}, head {head}: its detector scores"),
    )
    for key, (name, colour) in LOSSES.items():
        steps, values = curves[key]
        keep = downsample_indices(values, max_points)
        fig.add_trace(
            go.Scatter(x=place([steps[i] for i in keep]), y=[values[i] for i in keep], name=name, mode="lines",
                       line=dict(color=colour, width=3)),
            row=1, col=1,
        )
    if history.steps:
        for name, values in history.scores.items():
            if layer < values.shape[1] and head < values.shape[2]:
                fig.add_trace(
                    go.Scatter(
                        x=place(history.steps), y=values[:, layer, head], name=name.replace("_", " "),
                        mode="lines+markers",
                        line=dict(color=DETECTOR_COLOURS[name], width=3), marker=dict(size=7),
                        hovertemplate=f"{name.replace('_', ' ')}: %{{y:.2f}}<extra></extra>",
                    ),
                    row=2, col=1,
                )
    fig.add_vline(x=labels.get(step, step) if labels else step, line=dict(color=STEP_LINE, width=3, dash="dash"))
    if labels:
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=list(labels.values()))
    fig.update_yaxes(title_text="loss (nats)", row=1, col=1)
    fig.update_yaxes(title_text="score", range=[0, 1.02], row=2, col=1)
    fig.update_xaxes(title_text="training step", row=2, col=1)
    fig.update_layout(
        font=PROJECTOR_FONT, height=700, hovermode="x unified",
        legend=LEGEND,
        margin=dict(l=70, r=20, t=40, b=130),
    )
    return fig
