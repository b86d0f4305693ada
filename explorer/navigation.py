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
    PageInfo(
        "pages/train.py",
        "Train",
        "📈",
        "How a model learns: train a small GPT on a text of your choice and watch its loss fall, "
        "its learning rate and gradients change, and its writing improve, live.",
    ),
    PageInfo(
        "pages/attention.py",
        "Attention",
        "🎯",
        "Where each token looks: a model's attention maps for your text, every head at a glance, the "
        "arithmetic of one head step by step, and what the model is made of.",
    ),
    PageInfo(
        "pages/generate.py",
        "Generate",
        "✍️",
        "How a model writes: watch it pick one token at a time, see the probabilities behind each pick "
        "and how temperature, top-k and top-p reshape them, and measure how surprised it is by any text.",
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
