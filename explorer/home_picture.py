"""Home's picture: where the demo model's tokens look in one line of Shakespeare, drawn from
its sharpest head, with a link that opens the same map on the Attention page. The forward pass
is the Attention page's own, cached for the whole server, so the picture costs one small pass."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from explorer.attention_maps import attention_figure
from explorer.attention_tabs.inputs import attention_run
from explorer.models import find_models, load_model
from explorer.paths import FileStamp
from explorer.widgets import chart
from lm.checkpoint import WEIGHTS_FILE, Checkpoint, CheckpointError

LINE = "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?"  # short enough to label every token on Home


def sharpest_head(weights: np.ndarray) -> tuple[int, int]:
    """The (layer, head) whose attention is least spread out: the lowest mean entropy over the
    rows that have a choice to make (row 0 can only look at itself). weights: [layers, heads, T, T]."""
    rows = weights[:, :, 1:, :]
    entropy = -(rows * np.log(np.clip(rows, 1e-12, None))).sum(-1).mean(-1)
    layer, head = np.unravel_index(int(np.argmin(entropy)), entropy.shape)
    return int(layer), int(head)


def home_picture() -> None:
    """The demo model's (the first model on disk) attention on LINE, beside a short reading guide."""
    models = find_models()
    if not models:
        return
    entry = models[0]
    try:
        checkpoint = load_model(entry)
        weights = FileStamp.of(entry.path / WEIGHTS_FILE)
    except (CheckpointError, OSError):  # the Attention and Generate pages say why; Home simply has no picture
        return
    drawn = sharpest_map(weights, entry.name, checkpoint)
    if drawn is None:
        return
    layer, head, figure = drawn
    words, picture = st.columns([2, 3], vertical_alignment="center")
    with picture:
        chart(figure, "home_attention", f"{entry.name}-attention-L{layer}H{head}")
    with words:
        st.markdown(
            f"**Where a model's tokens look.** Each row is one token of Juliet's line; its colours show how "
            f"much it takes from each earlier token. This is head {head} of layer {layer} of **{entry.name}**, "
            "the sharpest of its heads on this line."
        )
        st.page_link("app_pages/attention.py", label="Open it on the Attention page", icon="➡️",
                     query_params={"model": entry.name, "att_text": LINE, "att_layer": layer, "att_head": head})


@st.cache_resource(max_entries=4, show_spinner=False)
def sharpest_map(weights: FileStamp, name: str, _checkpoint: Checkpoint) -> tuple[int, int, go.Figure] | None:
    """(layer, head, its map on LINE), once per version of the weights for every session: a rerun of
    Home then sends the same figure and the browser has nothing to redraw. Never modified afterwards:
    chart() restyles a copy."""
    ids = _checkpoint.tokenizer.encode(LINE)[-_checkpoint.model.config.block_size:]
    run = attention_run(_checkpoint, tuple(ids))
    if run is None:
        return None
    layer, head = sharpest_head(run.weights)
    return layer, head, attention_figure(run, layer, head, f"{name}: layer {layer}, head {head}", compact=True)
