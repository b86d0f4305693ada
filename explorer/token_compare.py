"""The Tokenizer page's "Tokenize text" tab: one text cut into tokens by several tokenizers side
by side, with their counts in a table."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from explorer.model_tokenizers import special_tokens_and_template
from explorer.plain_text import plain
from explorer.presenter import control
from explorer.token_view import chips_html, describe_tokens, text_stats
from explorer.prepare import download_button
from explorer.tokenizers import DEFAULT_OPENAI, JUST_TRAINED, TIKTOKEN_CHOICES, default_choices, on_this_machine
from explorer.url_state import BIND, bind_text
from lm.tokenizer import Tokenizer, TokenizerError, tiktoken_cache_dir, tiktoken_file

DEFAULT_TEXT = (
    "Hello world! A tokenizer cuts text into tokens, and a model only ever sees their ids.\n"
    "Numbers: 2026, 3.14159 and 1234567.   Code: for i in range(10): print(i)\n"
    "Emoji 🦙🎉 and other scripts: 日本語, Ελληνικά, русский, हिन्दी."
)
MAX_CHARS = 200_000


def text_input() -> str:
    return st.text_area("Text to tokenize", DEFAULT_TEXT, height=140, max_chars=MAX_CHARS, key="tok_text",
                        bind=bind_text("tok_text", "the text to tokenize"))


def compare_controls(choices: dict[str, Callable[[], Tokenizer]], add_just_trained: bool) -> tuple[list[str], bool]:
    """The tokenizers to compare and whether to show ids. A choice no longer offered is dropped;
    a tokenizer just trained is added if `add_just_trained`."""
    if "tok_chosen" in st.session_state:
        previous = st.session_state["tok_chosen"] + ([JUST_TRAINED] if add_just_trained else [])
        still = list(dict.fromkeys(c for c in previous if c in choices))
        if still != st.session_state["tok_chosen"]:
            st.session_state["tok_chosen"] = still
    with control("tok_chosen"):
        chosen = st.multiselect(
            "Tokenizers to compare", list(choices), default=default_choices(choices),
            key="tok_chosen", bind=BIND,
        )
    with control("tok_show_ids"):
        show_ids = st.toggle("Show token ids under the tokens", key="tok_show_ids", bind=BIND)
    return chosen, show_ids


def compare_tokens(text: str, chosen: list[str], choices: dict[str, Callable[[], Tokenizer]], show_ids: bool) -> None:
    """Each chosen tokenizer's tokens, two to a row, then the text's size and a table of counts.
    OpenAI's tokenizers whose files are missing get one note; if none of the chosen can be shown,
    a tokenizer on this machine stands in, so the page is never empty."""
    if not text:
        st.info("Type or paste some text above to see its tokens.")
        return
    shown = [label for label in chosen if on_this_machine(label)]
    missing = [label for label in chosen if label not in shown]
    if not missing and not any(on_this_machine(label) for label in TIKTOKEN_CHOICES):
        missing = list(DEFAULT_OPENAI)  # none of OpenAI's is here: say how to get them
    if missing:
        missing_note(missing, stand_in=None if shown else next(iter(default_choices(choices)), None))
        shown = shown or default_choices(choices)
    rows = []
    for start in range(0, len(shown), 2):
        for column, label in zip(st.columns(2), shown[start : start + 2]):
            with column:
                try:
                    rows.append(show_tokens(label, choices[label](), text, show_ids))
                except TokenizerError as exc:
                    st.warning(plain(f"{label} is not available: {exc}"))
    st.caption("Hover a token for its id and bytes. · is a space, ↵ a line break; a dashed red box is part of a character (its raw bytes).")
    chars, nbytes = st.columns(2)  # under the tokens: they are the picture, first on the screen
    chars.metric("Characters", f"{len(text):,}")
    nbytes.metric("Bytes (UTF-8)", f"{len(text.encode('utf-8')):,}")
    if len(rows) > 1:
        st.dataframe(pd.DataFrame(rows), hide_index=True)


def missing_note(labels: list[str], stand_in: str | None) -> None:
    """OpenAI's tokenizers chosen but not downloaded: what they need, a button that fetches them."""
    names, one = " and ".join(label.split(" (")[0] for label in labels), len(labels) == 1
    meanwhile = f" Meanwhile, **{stand_in}**, which is on this machine:" if stand_in else ""
    st.info(f"{names} {'needs its' if one else 'need their'} tokenizer file from OpenAI, not on this machine yet. "
            f"Download {'it' if one else 'them'} once below, or copy the shared rank files into "
            f"`{tiktoken_cache_dir()}`.{meanwhile}", icon="📥")
    download_button([tiktoken_file(TIKTOKEN_CHOICES[label]) for label in labels], key="tok_download")


def show_tokens(label: str, tokenizer: Tokenizer, text: str, show_ids: bool) -> dict:
    """One tokenizer's tokens as chips; returns its row of the table of counts."""
    ids = tokenizer.encode(text)
    stats = text_stats(text, ids)
    st.markdown(f"**{label}** · {stats.tokens:,} tokens · {stats.chars_per_token:.2f} characters per token")
    st.html(chips_html(describe_tokens(tokenizer, ids), show_ids=show_ids))
    special_tokens_and_template(tokenizer)
    return {"tokenizer": label, "vocabulary": tokenizer.vocab_size, "tokens": stats.tokens, "characters per token": round(stats.chars_per_token, 2)}
