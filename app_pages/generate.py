"""Generate: watch a model write one token at a time, see why it chose each token, and
measure how surprised it is by any text (its loss and perplexity)."""

import random
import time

import streamlit as st

from explorer.generation_view import (
    Generation, Stepper, attention_row_figure, distribution_bars, distribution_figure, draw_next, generation_html,
    label_of, loss_legend, probability_legend, score_html, score_ids,
)
from explorer.presenter import control
from explorer.token_view import token_label
from explorer.url_state import BIND, bind_text
from explorer.widgets import chart, model_picker
from lm.generate import Sampling, end_of_text_id, generate

DEFAULT_PROMPT = "ROMEO:"
DEFAULT_SCORE_TEXT = "To be, or not to be, that is the question."
MAX_CHARS = 10_000
REDRAW_SECONDS = 0.1  # while streaming, redraw the text at most this often

st.title("✍️ Generate")
st.write(
    "A model writes by predicting a probability for every possible next token, drawing one, "
    "appending it and repeating. Watch it happen, then pick any token to see what else it could have written."
)

checkpoint = model_picker("gen_model")
if checkpoint is None:
    st.stop()
model, tokenizer = checkpoint.model, checkpoint.tokenizer
vocab_size = tokenizer.vocab_size  # the padded rows of a model are not tokens
end_id = end_of_text_id(tokenizer)
generate_tab, score_tab = st.tabs(["Generate text", "Score a text"], key="gen_tab", bind=BIND)


def sampling_controls() -> Sampling:
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


def stream(prompt_ids: list[int], settings: Sampling, status, box) -> None:
    """Sample into the session state, redrawing the text as tokens arrive."""
    gen = Generation(str(checkpoint.path), prompt_ids, settings)
    st.session_state["gen"] = gen
    st.session_state["gen_position"] = 0
    prompt = tokenizer.decode(prompt_ids)
    started, drawn = time.perf_counter(), 0.0  # the first token is drawn at once
    for step in generate(model, tokenizer, prompt_ids, settings):
        gen.steps.append(step)
        now = time.perf_counter()
        gen.seconds = now - started
        if now - drawn >= REDRAW_SECONDS:
            box.html(generation_html(prompt, gen.steps))
            status.caption(f"Writing… {len(gen.steps):,} tokens, {len(gen.steps) / gen.seconds:,.1f} tokens/s")
            drawn = now
    gen.finished = True


def explain(gen: Generation, status, box) -> None:
    """The generated text with one token picked out, and the distribution that token was drawn from."""
    status.caption(gen.summary(end_id))
    steps = gen.steps
    st.subheader("Why this token?")
    position = 0
    if len(steps) > 1:
        position = st.select_slider(
            "Pick a generated token", options=range(len(steps)), key="gen_position",
            format_func=lambda i: f"{i + 1}: {token_label(steps[i].token_bytes)}",
        )
    box.html(generation_html(tokenizer.decode(gen.prompt_ids), steps, selected=position))
    bars = distribution_bars(steps[position], tokenizer)
    chart(distribution_figure(bars, gen.settings, position + 1), "gen_chart", f"next-token-{position + 1}")
    st.caption(
        "Grey: the model's own probabilities (softmax of its logits). Blue: the same after temperature, top-k "
        "and top-p, the distribution the token was actually drawn from. The shaded row is the token drawn."
    )
    with st.expander("The generated text on its own"):
        st.code("".join(s.text for s in steps), language=None, wrap_lines=True)


def step_by_step(prompt_ids: list[int], settings: Sampling) -> None:
    """One token per press of Next token, each with its distribution and the attention that chose it."""
    next_col, restart_col, _ = st.columns([1, 1, 3])
    clicked = next_col.button("Next token", type="primary", disabled=not prompt_ids, key="gen_next")
    restart = restart_col.button("Restart", key="gen_restart")
    stepper = st.session_state.get("gen_stepper")
    if restart or stepper is None or stepper.model != str(checkpoint.path) or stepper.prompt_ids != prompt_ids:
        stepper = st.session_state["gen_stepper"] = Stepper(str(checkpoint.path), prompt_ids, settings.seed)
    if clicked:
        draw_next(model, tokenizer, stepper, settings)
    steps = stepper.steps
    st.caption(
        f"{len(steps):,} tokens drawn · seed {stepper.seed} · each press draws one token with the settings above "
        "(change them between presses to see the bars change). Restart goes back to the prompt."
    )
    st.html(probability_legend())
    st.html(generation_html(tokenizer.decode(stepper.prompt_ids), steps, selected=len(steps) - 1 if steps else None))
    if not steps:
        st.info("Press **Next token** to let the model write one token.")
        return
    if steps[-1].token_id == end_id:
        st.caption("The model wrote <|endoftext|>: it thinks the document is over. It can still go on.")
    bars = distribution_bars(steps[-1], tokenizer)
    chart(distribution_figure(bars, stepper.settings[-1], len(steps)), "gen_step_chart", f"next-token-{len(steps)}")
    context = stepper.ids[: steps[-1].position][-model.config.block_size :]
    chosen = label_of(tokenizer, steps[-1].token_id)
    with control("gen_step_heads", advanced=True):
        per_head = st.toggle("Every head", key="gen_step_heads", bind=BIND,
                             help="Show each head on its own row instead of each layer's heads averaged.")
    chart(
        attention_row_figure(stepper.attention[-1], [label_of(tokenizer, i) for i in context], per_head,
                             f"Where the last token looked while the model chose “{chosen}”"),
        "gen_step_attention", f"attention-of-token-{len(steps)}",
    )
    st.caption(
        "The next-token probabilities are made from the last token's vector, which its attention filled with "
        "a mix of the tokens before it: each row is how one layer (or head) spread that attention."
    )


with generate_tab:
    prompt = st.text_area("Prompt", DEFAULT_PROMPT, height=100, max_chars=MAX_CHARS, key="gen_prompt",
                          bind=bind_text("gen_prompt", "the prompt"))
    settings = sampling_controls()
    stepwise = st.toggle("One token at a time", key="gen_stepwise", bind=BIND,
                         help="Draw a single token per press and see the probabilities and attention behind it.")
    prompt_ids = tokenizer.encode(prompt) or ([end_id] if end_id is not None else [])
    if not prompt:
        if end_id is None:
            st.warning("This model's tokenizer has no <|endoftext|> token to start from: type a prompt.")
        else:
            st.caption("Empty prompt: the model starts after <|endoftext|>, as at the start of a new document.")
    elif len(prompt_ids) > model.config.block_size:
        st.caption(
            f"The prompt is {len(prompt_ids):,} tokens long; the model only sees the last "
            f"{model.config.block_size:,} (its context length)."
        )
    if stepwise:
        step_by_step(prompt_ids, settings)
    else:
        clicked = st.button("Generate", type="primary", disabled=not prompt_ids, key="gen_button")
        st.html(probability_legend())
        status, box = st.empty(), st.empty()
        if clicked:
            stream(prompt_ids, settings, status, box)
        gen = st.session_state.get("gen")
        if gen is not None and gen.model == str(checkpoint.path):
            if gen.steps:
                explain(gen, status, box)


with score_tab:
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
    else:
        cached = st.session_state.get("score")
        if cached is None or cached[0] is not model or cached[1] != ids:  # reruns from the other tab reuse it
            with st.spinner("Scoring…"):
                st.session_state["score"] = (model, ids, score_ids(model, ids))
        score = st.session_state["score"][2]
        perplexity_col, loss_col, count_col = st.columns(3)
        perplexity_col.metric("Perplexity", f"{score.perplexity:,.1f}")
        loss_col.metric("Mean loss (nats per token)", f"{score.mean_loss:.3f}")
        count_col.metric("Tokens scored", f"{len(score.losses):,}")
        st.caption(f"A model guessing blindly among all {vocab_size:,} tokens would have perplexity {vocab_size:,}.")
        if score.windows > 1:
            st.info(
                f"The text is {len(ids):,} tokens long, more than the model's context of "
                f"{model.config.block_size:,}: it was read in {score.windows} overlapping windows, so that past "
                f"the first window every token is still predicted from at least {score.min_context:,} tokens."
            )
        st.html(loss_legend())
        st.html(score_html(score, tokenizer))
