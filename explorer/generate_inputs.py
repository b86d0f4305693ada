"""The Generate tab's inputs: the prompt, as the token ids the model continues, and the
sampling settings. Each widget's key is its URL parameter (explorer.url_state)."""

from __future__ import annotations

import random

import streamlit as st

from explorer import presenter
from explorer.presenter import control
from explorer.url_state import BIND, bind_text
from lm.generate import Sampling

DEFAULT_PROMPT = "ROMEO:"
MAX_CHARS = 10_000  # in the page's text boxes: a prompt, or a text to score
PACES = [1, 2, 5, 10, 20, 50, 0]  # tokens shown per second; 0: as fast as the model writes
PRESENTER_PACE, PACE = 5, 20  # slow enough to read aloud on a projector; brisk on one's own screen
PACE_VIEW = "gen_pace_presenting"  # session key: the view the pace was last drawn in


def prompt_input() -> str:
    return st.text_area("Prompt", DEFAULT_PROMPT, height=100, max_chars=MAX_CHARS, key="gen_prompt",
                        bind=bind_text("gen_prompt", "the prompt"))


def prompt_ids(prompt: str, tokenizer, end_id: int | None, block_size: int) -> list[int]:
    """The ids the model continues, saying what happens to an empty or an over-long prompt:
    an empty one starts after <|endoftext|> (no ids if the tokenizer lacks it), as at the
    start of a new document."""
    ids = tokenizer.encode(prompt) or ([end_id] if end_id is not None else [])
    if not prompt:
        if end_id is None:
            st.warning("This model's tokenizer has no <|endoftext|> token to start from: type a prompt.")
        else:
            st.caption("Empty prompt: the model starts after <|endoftext|>, as at the start of a new document.")
    elif len(ids) > block_size:
        st.caption(
            f"The prompt is {len(ids):,} tokens long; the model only sees the last "
            f"{block_size:,} (its context length)."
        )
    return ids


def sampling_controls() -> Sampling:
    """Temperature, top-k, top-p, length and seed; an empty seed box draws a new random seed."""
    temperature_col, top_k_col, top_p_col = st.columns(3)
    length_col, seed_col, _ = st.columns(3)
    with temperature_col, control("gen_temperature"):
        temperature = st.slider(
            "Temperature", 0.0, 2.0, 0.8, 0.05, key="gen_temperature", bind=BIND,
            help="Divides the logits before softmax: below 1 sharpens the distribution, above 1 flattens it; "
            "0 always takes the most likely token (greedy).",
        )
    with top_k_col, control("gen_top_k", advanced=True):
        top_k = st.number_input(
            "Top-k", min_value=0, value=50, step=10, key="gen_top_k", bind=BIND,
            help="Draw only among the k most likely tokens. 0 keeps them all.",
        )
    with top_p_col, control("gen_top_p", advanced=True):
        top_p = st.slider(
            "Top-p", 0.05, 1.0, 1.0, 0.05, key="gen_top_p", bind=BIND,
            help="Draw only among the most likely tokens whose probabilities add up to p. 1 keeps them all.",
        )
    with length_col, control("gen_max_new"):
        max_new_tokens = st.number_input(
            "Max new tokens", min_value=1, max_value=1000, value=100, step=10, key="gen_max_new", bind=BIND,
            help="Generation also stops early if the model writes <|endoftext|>.",
        )
    with seed_col, control("gen_seed", advanced=True):
        seed = st.number_input(
            "Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, placeholder="random", key="gen_seed", bind=BIND,
            help="The same seed and settings give the same text. Clear the box for a new random draw each time.",
        )
    return Sampling(
        temperature=temperature,
        top_k=int(top_k) or None,
        top_p=top_p if top_p < 1 else None,
        max_new_tokens=int(max_new_tokens),
        seed=int(seed) if seed is not None else random.randrange(2**31),
    )


def stepwise_toggle() -> bool:
    return st.toggle("One token at a time", key="gen_stepwise", bind=BIND,
                     help="Draw a single token per press and see the probabilities and attention behind it.")


def pace_control() -> float | None:
    """How many tokens a second the text appears at (None: as fast as the model writes them);
    slower by default in presenter view. The pace only holds tokens back: the text is the same.
    Switching the view moves a pace left at the old view's default to the new view's."""
    presenting = presenter.is_on()
    default, other = (PRESENTER_PACE, PACE) if presenting else (PACE, PRESENTER_PACE)
    view_changed = st.session_state.get(PACE_VIEW, presenting) != presenting
    st.session_state[PACE_VIEW] = presenting
    if view_changed and st.session_state.get("gen_pace") == other:
        st.session_state["gen_pace"] = default
    with control("gen_pace"):
        pace = st.select_slider(
            "Writing speed", PACES, value=default, key="gen_pace", bind=BIND,
            format_func=lambda p: f"{p} token{'s' if p > 1 else ''}/s" if p else "full speed",
            help="Slow it down to watch each token arrive, or let the model write as fast as it can. "
            "The same seed gives the same text at any speed.",
        )
    return float(pace) or None
