"""The "Head detectors" tab: how much each head behaves like a known kind of head, and
buttons that open the best-scoring heads in the Attention map."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import streamlit as st

from explorer import presenter
from explorer.attention_maps import detector_figure
from explorer.attention_tabs.view import AttentionView, shared_shape
from explorer.checkpoint_cache import cached_on_checkpoint
from explorer.head_statistics import top_heads
from explorer.url_state import BIND
from explorer.widgets import chart
from lm.checkpoint import Checkpoint
from lm.detectors import DETECTORS, PROBE_LENGTH, head_scores
from lm.tasks import probe_vocabulary

TOP_HEADS = 4  # buttons that open the best-scoring heads


@cached_on_checkpoint(max_entries=6, spinner="Scoring every head…")
def detector_scores(checkpoint: Checkpoint, ids: tuple[int, ...]) -> Mapping[str, np.ndarray]:
    """lm.detectors.head_scores; a task's model is probed with its task's symbols."""
    model = checkpoint.model
    vocabulary = probe_vocabulary(checkpoint.training, checkpoint.tokenizer, model.config.block_size)
    return {name: scores.numpy() for name, scores in head_scores(model, list(ids), vocabulary=vocabulary).items()}


def open_head(layer: int, head: int, n_layer: int, n_head: int) -> None:
    """Button callback: choose the head above and show its map (widgets take new values before they are drawn)."""
    st.session_state["att_layer"] = min(layer, n_layer - 1)
    st.session_state["att_head"] = min(head, n_head - 1)
    st.session_state["att_tab"] = "Attention map"


def render_detectors(view: AttentionView) -> None:
    with view.side():
        detector = st.segmented_control(
            "Detector", list(DETECTORS), default=next(iter(DETECTORS)), required=True, key="att_detector", bind=BIND,
            format_func=lambda d: d.replace("_", " "),
        )
    shape = shared_shape(view.models)
    for name, model, place in view.side_by_side():
        every_detector = detector_scores(model.checkpoint, model.run.ids)
        if every_detector is None:
            continue
        scores = every_detector[detector]
        with place:
            chart(detector_figure(scores, detector, (view.layer, view.head),
                                  f"{name}: {detector.replace('_', ' ')} score"),
                  f"att_detectors_{name}", f"{name}-{detector}-scores")
            st.markdown("Open one of the highest-scoring heads in the **Attention map**:")
            per_row = TOP_HEADS // 2 if view.comparing or presenter.is_on() else TOP_HEADS  # labels need the width
            for number, (layer, head, score) in enumerate(top_heads(scores, TOP_HEADS)):
                if number % per_row == 0:
                    columns = st.columns(per_row)
                columns[number % per_row].button(
                    f"layer {layer} · head {head}: {score:.2f}", key=f"att_open_{name}_{layer}_{head}",
                    on_click=open_head, args=(layer, head, *shape), width="stretch",
                )
    st.markdown(f"**{detector.replace('_', ' ')}:** {DETECTORS[detector]}")
    st.caption(
        "A score is the share of attention a head puts where that kind of head looks, averaged over your "
        "text's tokens (the first token is left out: it can only look at itself). 1 = always, 0 = never. "
        f"Induction is measured on {PROBE_LENGTH} random tokens shown twice: in the second half, a head that "
        "looks at the token after the current token's first appearance can predict what comes next by copying. "
        "The outlined cell is the layer and head chosen above."
    )
