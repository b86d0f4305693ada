"""The Home page's overview: a card per page saying what it teaches, and what this machine has
(the device training would use, the models on disk)."""

from __future__ import annotations

import streamlit as st

from explorer.models import find_models
from explorer.navigation import PageInfo
from explorer.workspace import runs_place
from lm.device import default_device, describe_device


def page_cards(pages: list[PageInfo]) -> None:
    """Two to a row: icon and title with what the page teaches (one element: every element is
    redrawn on each rerun), and a link to it."""
    for row_start in range(0, len(pages), 2):
        for column, page in zip(st.columns(2), pages[row_start : row_start + 2]):
            with column.container(border=True):
                st.markdown(f"### {page.icon} {page.title}\n\n{page.teaches}")
                st.page_link(page.path, label=f"Open {page.title}", icon="➡️")


def this_machine() -> None:
    """The device training would run on, and the models on disk with their sizes."""
    left, right = st.columns(2)
    with left:
        st.metric("Training would run on", default_device().upper())
        st.caption(describe_device(default_device()))
    with right:
        models = find_models()
        st.metric("Models on disk", len(models))
        if models:
            st.dataframe(
                [{"model": m.name, "size (MB)": round(m.size_bytes / 1e6, 1)} for m in models],
                hide_index=True,
            )
        else:
            st.caption(f"No trained models yet in {runs_place()}.")


def section(title: str, text: str) -> None:
    """A section's heading and its opening text, as one element."""
    st.markdown(f"### {title}\n\n{text}")
