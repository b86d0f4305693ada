"""The app's pages in one list: app.py builds the navigation from it, Home its cards."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st


@dataclass(frozen=True)
class PageInfo:
    path: str
    title: str
    icon: str
    teaches: str


HOME = PageInfo("pages/home.py", "Home", "🏠", "")
PAGES = [
    PageInfo(
        "pages/tokenizer.py",
        "Tokenizer",
        "🔤",
        "How text becomes numbers: see GPT-2, GPT-4 and your own tokenizer cut the same text into "
        "tokens, then train a byte-pair encoder and replay every merge it learned.",
    ),
]


def run_through_app() -> None:
    """Call first on every page.

    Streamlit 1.67 keeps a "legacy pages/ folder" flag from server start until
    app.py first calls st.navigation; a link straight to /tokenizer on a freshly
    started server would run the page file alone (no page config, the wrong
    sidebar). Clear the flag and rerun, so app.py runs and then opens this page."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
