"""Score a text: how surprised a model is by it, token by token (its loss), and on
average (its perplexity)."""

from __future__ import annotations

import streamlit as st

from explorer.generate_inputs import MAX_CHARS
from explorer.generation_view import loss_legend, score_html
from explorer.url_state import bind_text
from lm.inspect import score_ids
from lm.model import GPT

DEFAULT_SCORE_TEXT = "To be, or not to be, that is the question."


def score_a_text(model: GPT, tokenizer) -> None:
    st.write(
        "How surprised is the model by a text? Each token's loss is −ln of the probability the model gave it "
        "after reading the tokens before it; perplexity is e to the mean loss: roughly how many tokens the "
        "model was choosing between, on average."
    )
    text = st.text_area("Text to score", DEFAULT_SCORE_TEXT, height=120, max_chars=MAX_CHARS, key="score_text",
                        bind=bind_text("score_text", "the text to score"))
    ids = tokenizer.encode(text)
    if len(ids) < 2:
        st.info("Type a text of at least two tokens: the first token has nothing before it to predict it from.")
        return
    cached = st.session_state.get("score")
    if cached is None or cached[0] is not model or cached[1] != ids:  # reruns from the other tab reuse it
        with st.spinner("Scoring…"):
            st.session_state["score"] = (model, ids, score_ids(model, ids))
    score = st.session_state["score"][2]
    perplexity_col, loss_col, count_col = st.columns(3)
    perplexity_col.metric("Perplexity", f"{score.perplexity:,.1f}")
    loss_col.metric("Mean loss (nats per token)", f"{score.mean_loss:.3f}")
    count_col.metric("Tokens scored", f"{len(score.losses):,}")
    vocab_size = tokenizer.vocab_size  # the padded rows of a model are not tokens
    st.caption(f"A model guessing blindly among all {vocab_size:,} tokens would have perplexity {vocab_size:,}.")
    if score.windows > 1:
        st.info(
            f"The text is {len(ids):,} tokens long, more than the model's context of "
            f"{model.config.block_size:,}: it was read in {score.windows} overlapping windows, so that past "
            f"the first window every token is still predicted from at least {score.min_context:,} tokens."
        )
    st.html(loss_legend())
    st.html(score_html(score, tokenizer))
