"""The "Head statistics" tab: one row per head, how spread out it is and where it mostly looks."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer import presenter
from explorer.attention_tabs.view import AttentionView
from explorer.head_statistics import head_statistics, uniform_entropy
from explorer.widgets import table

SHARES = ("previous token", "first token", "itself")


def render_statistics(view: AttentionView) -> None:
    render_tables(view)
    st.caption(
        "Averages over every query token but the first (which can only look at itself). Entropy, in bits: "
        "0 when each token looks at a single token, more the more it spreads its attention. The three shares "
        "are the weight given to the previous token, to the first token and to itself; 'mostly' names a share "
        "of at least one half."
    )


def render_tables(view: AttentionView) -> None:
    columns = {c: st.column_config.ProgressColumn(c, min_value=0.0, max_value=1.0, format="%.2f") for c in SHARES}
    columns["entropy (bits)"] = st.column_config.NumberColumn(format="%.2f")
    for name, model in view.models.items():  # one under the other: the tables need the width
        T = len(model.run.ids)
        if T < 2:
            st.info(f"{name}: head statistics compare where tokens look; type at least two tokens.")
            continue
        st.markdown(f"**{name}** · a head spreading evenly over its {T} tokens would score "
                    f"{uniform_entropy(T):.2f} bits")
        table(pd.DataFrame(head_statistics(model.run.weights)), presenter.CHART_HEIGHT - 60 if presenter.is_on() else 600, column_config=columns, key=f"att_stats_{name}")
