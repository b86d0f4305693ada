"""One token at a time: each press of Next token draws one token, shown with the
distribution it was drawn from and where the model's last token looked while choosing it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import streamlit as st

from explorer.generation_view import generation_html, label_of, probability_legend
from explorer.next_token_charts import attention_row_figure, distribution_bars, distribution_figure
from explorer.plain_text import plain
from explorer.presenter import control
from explorer.url_state import BIND
from explorer.widgets import chart
from lm.checkpoint import Checkpoint
from lm.generate import BrokenModelError, Sampling, Step, generate
from lm.inspect import last_token_attention
from lm.model import GPT


@dataclass
class Stepper:
    """The step-by-step mode's state, kept in the session: the prompt, the tokens drawn so far
    with the settings each was drawn with, and where the model looked to choose each one."""

    model: str  # the checkpoint folder
    prompt_ids: list[int]
    seed: int
    steps: list[Step] = field(default_factory=list)
    settings: list[Sampling] = field(default_factory=list)
    attention: list[np.ndarray] = field(default_factory=list)  # per step: [layers, heads, context]

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + [step.token_id for step in self.steps]


def step_seed(seed: int, step: int) -> int:
    """The seed of the step-th draw: fixed by the run's seed, so Restart replays the same tokens
    (under the same settings), and different from step to step."""
    return hash((seed, step)) & 0x7FFFFFFF  # hashing a tuple of ints is the same in every process


def draw_next(model: GPT, tokenizer, stepper: Stepper, settings: Sampling) -> None:
    """Draw one more token with lm.generate under `settings`, and record the attention that chose it."""
    ids = stepper.ids
    seeded = replace(settings, max_new_tokens=1, seed=step_seed(stepper.seed, len(stepper.steps)),
                     stop_at_end_of_text=False)
    step = next(generate(model, tokenizer, ids, seeded))
    stepper.attention.append(last_token_attention(model, ids))
    stepper.steps.append(step)
    stepper.settings.append(settings)


def step_by_step(checkpoint: Checkpoint, prompt_ids: list[int], settings: Sampling, end_id: int | None) -> None:
    """Next token and Restart, the text so far, and the last token explained."""
    stepper = stepper_controls(checkpoint, prompt_ids, settings)
    steps = stepper.steps
    st.caption(
        f"{len(steps):,} tokens drawn · seed {stepper.seed} · each press draws one token with the settings above "
        "(change them between presses to see the bars change). Restart goes back to the prompt."
    )
    st.html(probability_legend())
    tokenizer = checkpoint.tokenizer
    st.html(generation_html(tokenizer.decode(stepper.prompt_ids), steps, selected=len(steps) - 1 if steps else None))
    if not steps:
        st.info("Press **Next token** to let the model write one token.")
        return
    if steps[-1].token_id == end_id:
        st.caption("The model wrote <|endoftext|>: it thinks the document is over. It can still go on.")
    bars = distribution_bars(steps[-1], tokenizer)
    chart(distribution_figure(bars, stepper.settings[-1], len(steps)), "gen_step_chart", f"next-token-{len(steps)}")
    where_it_looked(stepper, tokenizer, checkpoint.model.config.block_size)


def stepper_controls(checkpoint: Checkpoint, prompt_ids: list[int], settings: Sampling) -> Stepper:
    """The session's stepper, started afresh by Restart or a new model or prompt, one token longer
    after a press of Next token."""
    next_col, restart_col, _ = st.columns([1, 1, 3])
    clicked = next_col.button("Next token", type="primary", disabled=not prompt_ids, key="gen_next")
    restart = restart_col.button("Restart", key="gen_restart")
    model_path = str(checkpoint.path)
    stepper = st.session_state.get("gen_stepper")
    if restart or stepper is None or stepper.model != model_path or stepper.prompt_ids != prompt_ids:
        stepper = st.session_state["gen_stepper"] = Stepper(model_path, prompt_ids, settings.seed)
    if clicked:
        try:
            draw_next(checkpoint.model, checkpoint.tokenizer, stepper, settings)
        except BrokenModelError as exc:
            st.error(plain(exc))
    return stepper


def where_it_looked(stepper: Stepper, tokenizer, block_size: int) -> None:
    """Where the last token looked while the model chose the newest token, per layer or per head."""
    steps = stepper.steps
    context = stepper.ids[: steps[-1].position][-block_size:]
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
