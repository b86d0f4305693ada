"""The Inside the model page above its tabs: the model, a ready-made example or your own text,
and the tokens the model reads."""

from __future__ import annotations

import streamlit as st

from explorer.inside_examples import Example, examples_for
from explorer.inside_tabs.view import InsideView
from explorer.token_view import chips_html, describe_tokens, token_label
from explorer.url_state import bind_text
from explorer.widgets import model_picker

MAX_TOKENS = 64  # a lens grid wider than this has columns too narrow to read; the last ones are kept
MAX_CHARS = 5_000
PATCHING_KEYS = ("ins_corrupt", "ins_clean_answer", "ins_corrupt_answer")
MODEL_SEEN = "ins_model_seen"  # session key: the model the text was chosen for


def use_example(examples: dict[str, Example]) -> None:
    """Selectbox callback: the chosen example's prompt into the text box; the patching tab's boxes
    emptied of their old values, so they take the example's (they may not be drawn yet)."""
    st.session_state["ins_text"] = examples[st.session_state["ins_example"]].clean
    for key in PATCHING_KEYS:
        st.session_state.pop(key, None)


def follow_model(name: str, examples: dict[str, Example]) -> None:
    """Another model chosen: its first example replaces the text (a copy-task model cannot read
    Shakespeare). The first run of a session keeps what its link or defaults gave."""
    before = st.session_state.get(MODEL_SEEN)
    st.session_state[MODEL_SEEN] = name
    if before is not None and before != name:
        st.session_state["ins_example"] = next(iter(examples))
        use_example(examples)


def read_inputs(controls) -> InsideView | None:
    """The model and its reading of the text; None (the page stops) without a model or a text."""
    checkpoint = model_picker("ins_model", "Model")
    if checkpoint is None:
        return None
    examples = examples_for(checkpoint)
    if st.session_state.get("ins_example") not in examples:
        st.session_state.pop("ins_example", None)  # another model's example: this one's first instead
    follow_model(checkpoint.path.name, examples)
    name = st.selectbox("Example", list(examples), key="ins_example", on_change=use_example, args=(examples,),
                        help="Ready-made prompts for this model; change the text as you like.")
    first = examples[name]
    # no default once the session holds a text: a model switch may have set it (explorer: follow_model)
    default = None if "ins_text" in st.session_state else first.clean
    text = st.text_area("Text (the clean prompt)", default, height=80, max_chars=MAX_CHARS, key="ins_text",
                        bind=bind_text("ins_text", "the text"))
    if not (text or "").strip():
        st.info("Type some text above to look inside the model.")
        return None
    ids = checkpoint.tokenizer.encode(text)
    length, keep = len(ids), min(MAX_TOKENS, checkpoint.model.config.block_size)
    if length > keep:
        st.warning(f"The text is {length:,} tokens long; this page reads the last {keep}.")
        ids = ids[-keep:]
    st.html(chips_html(describe_tokens(checkpoint.tokenizer, ids)))
    labels = tuple(token_label(checkpoint.tokenizer.token_bytes(i)) for i in ids)
    return InsideView(checkpoint.path.name, checkpoint, tuple(ids), labels, first, length, controls)

