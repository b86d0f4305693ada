"""Widgets several pages share. Each shows its own errors and returns None when
there is nothing usable yet, so a page never sees a traceback."""

from __future__ import annotations

import re

import plotly.graph_objects as go
import streamlit as st

from explorer import presenter
from explorer.models import find_models, load_model
from explorer.paths import runs_root
from explorer.plain_text import plain
from explorer.prepare import download_button
from explorer.url_state import BIND, bind_text
from lm.checkpoint import Checkpoint, CheckpointError
from lm.data import (
    CORPORA, MAX_TEXT_BYTES, TEXT_ENCODINGS, DataError, NotUTF8Error, data_dir, decode_text, human_size, is_cached,
    load_corpus,
)

TABLE_ROW = 36  # pixels: a table row's height, fixed so a table's height can be set from its rows
SOURCES = [corpus.title for corpus in CORPORA.values()] + ["Upload a file", "Paste text"]


def holds_its_own_text(key: str) -> bool:
    """Whether corpus_input(key)'s text is an upload or a paste rather than a corpus of the app's:
    a form that holds one must stay drawn, since a widget that is not drawn loses it."""
    source = st.session_state.get(f"{key}_source")
    return source is not None and all(source != corpus.title for corpus in CORPORA.values())


def corpus_input(key: str, label: str = "Text to learn from") -> tuple[str, str] | None:
    """A corpus from the registry, an upload or a paste: (text, a short description) or None."""
    source = st.radio(label, SOURCES, horizontal=True, key=f"{key}_source", bind=BIND)
    corpus = next((c for c in CORPORA.values() if c.title == source), None)
    if corpus is not None:
        return _registered_corpus(corpus, key)
    if source == "Upload a file":
        return _uploaded_text(key)
    pasted = st.text_area("Paste your text", key=f"{key}_paste", height=150, max_chars=MAX_TEXT_BYTES // 4,
                          bind=bind_text(f"{key}_paste", "the pasted text"))
    if not pasted.strip():
        st.info("Paste some text above to train on it.")
        return None
    return pasted, f"pasted text ({len(pasted):,} characters)"


@st.cache_data(show_spinner=False, max_entries=4)
def _read_cached_corpus(name: str, path: str, mtime_ns: int) -> str:
    """Hash-checked and decoded once per file version, not on every rerun of the pages showing it."""
    return load_corpus(name)


def _registered_corpus(corpus, key: str) -> tuple[str, str] | None:
    """The corpus if it is on this machine; else a download button (drawing a page never waits on the network)."""
    st.caption(corpus.description)
    if not is_cached(corpus):
        st.info(f"{corpus.title} is not on this machine yet: download it once, or choose Upload a file.", icon="📥")
        download_button([corpus.file], key=f"{key}_download")
        return None
    try:
        path = data_dir() / corpus.filename
        return _read_cached_corpus(corpus.name, str(path), path.stat().st_mtime_ns), corpus.title
    except DataError as exc:
        st.error(plain(exc))
        return None


def within_limit(upload, limit: int) -> bool:
    """Whether an upload is at most `limit` bytes; if not, an error says so (the browser's limit
    is not enforced by the server)."""
    if upload.size <= limit:
        return True
    st.error(f"{plain(upload.name)} is {human_size(upload.size)}; the limit is {human_size(limit)}.")
    return False


def _uploaded_text(key: str) -> tuple[str, str] | None:
    upload = st.file_uploader(
        f"A plain-text file, UTF-8 preferred (up to {MAX_TEXT_BYTES // 2**20} MB)", key=f"{key}_upload"
    )
    if upload is None or not within_limit(upload, MAX_TEXT_BYTES):
        return None
    data = upload.getvalue()
    try:
        return decode_text(data), upload.name
    except NotUTF8Error as exc:
        st.warning(plain(f"{upload.name}: {exc}"))
        encoding = st.selectbox("Read the file as", TEXT_ENCODINGS[1:], index=None, key=f"{key}_encoding")
        if encoding is None:
            return None
        try:
            return decode_text(data, encoding), f"{upload.name} ({encoding})"
        except DataError as retry_exc:
            st.error(plain(f"{upload.name}: {retry_exc}"))
    except DataError as exc:
        st.error(plain(f"{upload.name}: {exc}"))
    return None


def model_picker(key: str, label: str = "Model", index: int = 0) -> Checkpoint | None:
    """Choose a checkpoint folder under the runs root and load it; None (with a
    message saying how to get one) when there is none or it cannot be read.

    The choice is in the URL under `key`; `?model=NAME` (the links from Home and Train)
    makes NAME the first picker's default instead."""
    models = find_models()
    if not models:
        st.info(
            f"No model on disk yet. Train one on the Train page, or copy a checkpoint folder "
            f"(config.json, tokenizer.json, model.safetensors) into `{runs_root()}/`."
        )
        return None
    by_name = {m.name: m for m in models}
    linked = st.query_params.get("model")  # e.g. from a finished run on the Train page
    if index == 0 and linked in by_name:
        index = list(by_name).index(linked)
    name = st.selectbox(label, list(by_name), index=min(index, len(models) - 1), key=key, bind=BIND)
    try:
        return load_model(by_name[name])
    except CheckpointError as exc:
        st.error(plain(f"{name} cannot be loaded: {exc}"))
        return None


def open_tab_only(renders: dict, view, key: str) -> None:
    """Tabs named by `renders` (name -> function of `view`); only the open one is drawn, so a page
    with many tabs pays for one per rerun. The open tab is kept in the address."""
    tabs = st.tabs(list(renders), key=key, on_change="rerun", bind="query-params")
    for tab, render in zip(tabs, renders.values()):
        with tab:
            if tab.open:
                render(view)


def chart(fig: go.Figure, key: str, name: str) -> None:
    """st.plotly_chart with the exports a slide needs: plotly's camera button saves a PNG at
    twice the screen's resolution (in the browser, no extra dependency), and "⬇ HTML"
    downloads the interactive chart as one standalone file, built only when clicked."""
    if presenter.is_on():
        fig = presenter.restyle(fig)
    filename = file_stem(name)
    config = {"toImageButtonOptions": {"format": "png", "scale": 2, "filename": filename}, "displaylogo": False}
    st.plotly_chart(fig, width="stretch", key=key, config=config)
    st.download_button(
        "⬇ HTML", data=lambda: figure_html(fig), file_name=f"{filename}.html", mime="text/html", key=f"{key}_html",
        type="tertiary", on_click="ignore", help="The interactive chart as a web page of its own, for slides.",
    )


def table(data, max_height: int, **options) -> None:
    """st.dataframe without its index, as tall as its rows up to `max_height`, so a short table is shown whole."""
    st.dataframe(data, hide_index=True, row_height=TABLE_ROW, height=min(max_height, TABLE_ROW * (len(data) + 1) + 3),
                 **options)


def figure_html(fig: go.Figure) -> str:
    """A standalone web page of the figure, plotly.js inlined: it opens offline."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False})


def file_stem(name: str) -> str:
    """A file name from a chart's name: letters, digits, '-' and '_' only."""
    return re.sub(r"[^\w-]+", "-", name, flags=re.ASCII).strip("-") or "chart"
