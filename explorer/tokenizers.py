"""The tokenizers the pages offer: OpenAI's through tiktoken, the demo model's and our own BPEs
saved on disk, loaded once per server and shared by every session. Nothing here downloads:
a page never waits on the network (the Home page's "Prepare this machine" does that)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from explorer.model_tokenizers import imported_tokenizers
from explorer.paths import FileStamp, bundled_models_dir, check_name, tokenizers_dir
from lm.checkpoint import TOKENIZER_FILE, has_checkpoint
from lm.tokenizer import (
    TIKTOKEN_ENCODINGS, BPETokenizer, TiktokenTokenizer, Tokenizer, load_tokenizer, tiktoken_file,
)

TIKTOKEN_CHOICES = {f"{title} ({name})": name for name, title in TIKTOKEN_ENCODINGS.items()}
JUST_TRAINED = "Own BPE (just trained)"
MODEL_PREFIX = "Model: "
DEFAULT_OPENAI = ("GPT-2 (r50k_base)", "GPT-4 (cl100k_base)")


@st.cache_resource(show_spinner="Loading tokenizer…")
def load_tiktoken(encoding_name: str) -> TiktokenTokenizer:
    """TokenizerMissing at once when the rank file is not here (a failure is not cached, so a
    file downloaded meanwhile is found on the next run)."""
    return TiktokenTokenizer(encoding_name, download=False)


@st.cache_resource(show_spinner="Loading tokenizer…")
def _load_file(stamp: FileStamp) -> BPETokenizer | TiktokenTokenizer:
    return load_tokenizer(stamp.path, download=False)


def tokenizer_choices(just_trained: BPETokenizer | None = None) -> dict[str, Callable[[], Tokenizer]]:
    """Label -> a function that loads it (lazily: a missing GPT-4 file only matters if chosen):
    OpenAI's, the bundled models' own, the BPE just trained on the page if any, and the saved ones."""
    choices = {label: (lambda name=name: load_tiktoken(name)) for label, name in TIKTOKEN_CHOICES.items()}
    for name, path in model_tokenizers().items():
        choices[f"{MODEL_PREFIX}{name}"] = lambda path=path: load_saved(path)
    if just_trained is not None:
        choices[JUST_TRAINED] = lambda: just_trained
    for name, path in saved_tokenizers().items():
        choices[f"Saved: {name}"] = lambda path=path: load_saved(path)
    return choices


def on_this_machine(label: str) -> bool:
    """Whether a choice loads without a download: all but OpenAI's whose file is missing."""
    return label not in TIKTOKEN_CHOICES or tiktoken_file(TIKTOKEN_CHOICES[label]).is_present()


def default_choices(choices: dict[str, Callable[[], Tokenizer]]) -> list[str]:
    """GPT-2 and GPT-4 when their files are here, else the first tokenizer that is."""
    openai = [label for label in DEFAULT_OPENAI if on_this_machine(label)]
    return openai or [label for label in choices if label not in TIKTOKEN_CHOICES][:1]


def load_saved(path: Path) -> BPETokenizer | TiktokenTokenizer:
    """Cached on the file's stamp, so a re-saved file is read again."""
    return _load_file(FileStamp.of(path))


def model_tokenizers() -> dict[str, Path]:
    """The tokenizers of the models shipped with the app (the demo) and of the imported
    open-weight models (explorer.model_tokenizers), by model name."""
    folder = bundled_models_dir()
    models = sorted(p for p in folder.iterdir() if has_checkpoint(p)) if folder.is_dir() else []
    return {p.name: p / TOKENIZER_FILE for p in models} | imported_tokenizers()


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
