"""The "Across training" tab: a run's attention snapshots replayed step by step, the chosen
head's map beside its detector scores and the loss curve."""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer.attention_maps import weights_figure
from explorer.attention_tabs.view import AttentionView
from explorer.checkpoint_cache import frozen
from explorer.paths import FileStamp
from explorer.plain_text import plain
from explorer.token_view import token_label
from explorer.training_snapshots import (
    Snapshots, SnapshotError, find_snapshots, history_figure, load_snapshot, nearest_step, read_detector_history,
)
from explorer.widgets import chart
from lm.checkpoint import Checkpoint
from lm.run_folder import read_metrics


@st.cache_resource(max_entries=32, show_spinner=False)
def snapshot(stamp: FileStamp, step: int, _snapshots: Snapshots) -> np.ndarray:
    """One step's attention, read once per version of its file and shared read-only by every session
    (not unpickled again on each rerun)."""
    return frozen(load_snapshot(_snapshots, step))


def render_across_training(view: AttentionView) -> None:
    for name, model in view.models.items():  # one under the other: each needs the width
        replay(name, model.checkpoint, view)
    st.caption(
        "A training run saves every head's attention on one fixed probe text every few steps. Pick a layer "
        "and head, then drag the slider through training: the map shows the head at that step; the "
        "chart shows its detector scores over all steps under the loss curve, so the moment a head learns "
        "its job lines up with the loss dropping."
    )


def replay(name: str, checkpoint: Checkpoint, view: AttentionView) -> None:
    """One run's snapshots: the head's map at a step, and its detector scores beside the loss."""
    snapshots = find_snapshots(checkpoint.path)
    if snapshots is None:
        st.info(
            f"**{name}** has no attention snapshots. Train a model on the **Train** page: while it learns, a run "
            "saves the attention of every head on a fixed probe text every few steps (on by default), and this "
            "tab replays them next to the loss curve."
        )
        return
    steps = snapshots.steps
    key = f"att_train_step_{name}"
    if st.session_state.get(key) not in steps:
        st.session_state[key] = steps[-1]
    layer, head = view.layer, view.head
    with view.side():
        step = st.select_slider(
            f"Training step ({name})" if view.comparing else "Training step", steps, key=key,
            format_func=lambda s: f"{s:,}", help="Drag to watch the chosen head change as the model learns.",
        )
    try:
        weights = snapshot(FileStamp.of(snapshots.path(step)), step, snapshots)
    except (SnapshotError, OSError) as exc:
        st.error(plain(f"{name}: {exc}"))
        return
    labels = tuple(token_label(token.encode("utf-8")) for token in snapshots.tokens)
    history = read_detector_history(snapshots.folder)
    map_col, chart_col = st.container(), st.container()  # one under the other: beside, a map's labels collide
    if layer < weights.shape[0] and head < weights.shape[1]:
        with map_col:
            chart(weights_figure(weights[layer, head], labels, f"layer {layer}, head {head} at step {step:,}",
                                 compact=True),
                  f"att_train_map_{name}", f"{name}-layer{layer}-head{head}-step{step}")
    with chart_col:
        chart(history_figure(read_metrics(snapshots.folder), history, layer, head, step),
              f"att_train_history_{name}", f"{name}-layer{layer}-head{head}-over-training")
    scores = history.at(nearest_step(history.steps, step)) if history.steps else None
    if scores is not None:
        shares = " · ".join(
            f"{detector.replace('_', ' ')} {values[layer, head]:.2f}" for detector, values in scores.items()
            if layer < values.shape[0] and head < values.shape[1]
        )
        st.caption(f"Layer {layer}, head {head} at step {nearest_step(history.steps, step):,}: {shares}")
