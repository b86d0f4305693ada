"""Open-weight models' own tokenizers on the Tokenizer page: found beside their imported
checkpoints (lm.hf_import), and what they carry beyond a vocabulary, their special tokens and
the chat template that turns a conversation into the text the model was tuned on."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from explorer.models import find_models
from explorer.paths import FileStamp
from explorer.presenter import is_on
from lm.checkpoint import CONFIG_FILE, TOKENIZER_FILE
from lm.hf_import import IMPORTED
from lm.hf_tokenizer import HFTokenizer
from lm.tokenizer import Tokenizer


def imported_tokenizers() -> dict[str, Path]:
    """The tokenizer files of the imported open-weight models on disk, by model name."""
    return {entry.name: entry.path / TOKENIZER_FILE for entry in find_models() if _is_imported(entry.path)}


def _is_imported(folder: Path) -> bool:
    try:
        return _config_says_imported(FileStamp.of(folder / CONFIG_FILE))
    except OSError:
        return False  # the model lists say why a checkpoint cannot be read


@st.cache_data(max_entries=512, show_spinner=False)
def _config_says_imported(config: FileStamp) -> bool:
    """Read once per version of a config file for every session: the Tokenizer page asks on each
    rerun, of every model in the runs roots (a class's runs among them)."""
    try:
        training = json.loads(Path(config.path).read_text(encoding="utf-8")).get("training") or {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False
    return isinstance(training, dict) and training.get("source") == IMPORTED


def special_tokens_and_template(tokenizer: Tokenizer) -> None:
    """A tokenizer's special tokens (id and text) and its chat template, when it has them."""
    if not isinstance(tokenizer, HFTokenizer):  # our BPE's one <|endoftext|> and OpenAI's are known from the page
        return
    special, template = tokenizer.special_tokens, tokenizer.chat_template
    if not special and not template:
        return
    parts = [f"{len(special)} special token{'s' if len(special) != 1 else ''}"] if special else []
    with st.expander(" and ".join(parts + (["a chat template"] if template else [])), expanded=is_on()):
        if special:
            rows = sorted(special.items(), key=lambda item: item[1])
            st.dataframe(pd.DataFrame(rows, columns=["token", "id"]), hide_index=True)
        if template:
            st.caption("Chat template (Jinja): how a conversation becomes the text the model reads")
            st.code(template, language="jinja2", height=250, wrap_lines=True)
