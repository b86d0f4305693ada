"""The "Attention map" and "All heads" tabs: the chosen head large, and every head at a glance."""

from __future__ import annotations

import streamlit as st

from explorer.attention_maps import attention_figure, head_grid_figure
from explorer.attention_tabs.view import AttentionView
from explorer.widgets import chart


def render_map(view: AttentionView, tab: str = "map") -> None:
    """The chosen layer and head, large, for each model (`tab` keeps the chart keys of two tabs apart)."""
    st.caption(
        "Row = the token looking (query), column = a token it looks at (key). Each row's weights add up to 1, "
        "and no token looks ahead: everything right of the diagonal is 0. Hover a cell for its tokens."
    )
    layer, head = view.layer, view.head
    for name, model, place in view.side_by_side():
        with place:
            chart(attention_figure(model.run, layer, head, f"{name}: layer {layer}, head {head}",
                                   compact=view.comparing),
                  f"att_{tab}_{name}", f"{name}-layer{layer}-head{head}-attention")


def render_all_heads(view: AttentionView) -> None:
    st.caption(
        "Every head of every layer at a glance. Look for a dark line just below the diagonal (each token "
        "looks at the one before it), a dark first column (everyone looks at the first token) or the "
        "diagonal itself (each token looks at itself). Pick a layer and head above: it is outlined here "
        "and opens large below."
    )
    for name, model in view.models.items():
        chart(head_grid_figure(model.run.weights, (view.layer, view.head), name), f"att_grid_{name}",
              f"{name}-all-heads")
    render_map(view, "chosen")
