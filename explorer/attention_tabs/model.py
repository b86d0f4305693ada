"""The "Model view" tab: what each model is made of, its size and cost, and its blocks."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.attention_tabs.view import AttentionView
from explorer.model_view import block_diagram_html, config_rows, parameter_figure, size_estimates
from explorer.widgets import chart


def render_model_view(view: AttentionView) -> None:
    for name, model, place in view.side_by_side():
        with place:
            checkpoint = model.checkpoint
            config = checkpoint.model.config
            if view.comparing:
                st.subheader(name)
            chart_col, config_col = (st.container(), st.container()) if view.comparing else st.columns(2)
            with chart_col:  # the picture first: where the parameters are
                chart(parameter_figure(config), f"att_params_{name}", f"{name}-parameters")
            config_col.table(pd.DataFrame(config_rows(config)).set_index("setting"))
            sizes = list(size_estimates(config).items())
            for start in range(0, len(sizes), 3):
                for column, (label, value) in zip(st.columns(3), sizes[start : start + 3]):
                    column.metric(label, value)
            st.caption(
                "Training memory: weights, gradients and AdamW's two moments (16 bytes a parameter) plus "
                "activations. FLOPs are per token (a FLOP is one multiply or add); training costs three forward "
                "passes: the forward one and twice that backwards."
            )
            st.markdown("**The model, top to bottom**")
            st.html(block_diagram_html(config))
            if checkpoint.training:
                with st.expander("How it was trained"):
                    st.json(checkpoint.training)
