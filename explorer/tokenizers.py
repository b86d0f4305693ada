"""The tokenizers the pages offer: OpenAI's through tiktoken, and our own BPEs saved
on disk, loaded once per server and shared by every session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from explorer.paths import FileStamp, check_name, tokenizers_dir
from lm.tokenizer import TIKTOKEN_ENCODINGS, BPETokenizer, TiktokenTokenizer, Tokenizer, load_tokenizer

TIKTOKEN_CHOICES = {f"{title} ({name})": name for name, title in TIKTOKEN_ENCODINGS.items()}
JUST_TRAINED = "Own BPE (just trained)"


@st.cache_resource(show_spinner="Loading tokenizer…")
def load_tiktoken(encoding_name: str) -> TiktokenTokenizer:
    return TiktokenTokenizer(encoding_name)


@st.cache_resource(show_spinner="Loading tokenizer…")
def _load_file(stamp: FileStamp) -> BPETokenizer | TiktokenTokenizer:
    return load_tokenizer(stamp.path)


def tokenizer_choices(just_trained: BPETokenizer | None = None) -> dict[str, Callable[[], Tokenizer]]:
    """Label -> a function that loads it (lazily: a missing GPT-4 file only matters if chosen):
    OpenAI's, the BPE just trained on the page if any, and the saved ones."""
    choices = {label: (lambda name=name: load_tiktoken(name)) for label, name in TIKTOKEN_CHOICES.items()}
    if just_trained is not None:
        choices[JUST_TRAINED] = lambda: just_trained
    for name, path in saved_tokenizers().items():
        choices[f"Saved: {name}"] = lambda path=path: load_saved(path)
    return choices


def load_saved(path: Path) -> BPETokenizer | TiktokenTokenizer:
    """Cached on the file's stamp, so a re-saved file is read again."""
    return _load_file(FileStamp.of(path))


def saved_tokenizers() -> dict[str, Path]:
    """Saved tokenizers by name, newest first."""
    files = sorted(tokenizers_dir().glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    return {p.stem: p for p in files}


def save_tokenizer(tokenizer: BPETokenizer, name: str) -> Path:
    """Write `name`.json into the tokenizers folder (the name is checked: no paths)."""
    folder = tokenizers_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.name = check_name(name)
    path = folder / f"{name}.json"
    tokenizer.save(path)
    return path
