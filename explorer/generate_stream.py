"""Generate all at once: the text streams in as the model writes it, then any token can be
picked to see the distribution it was drawn from. The result stays in the session, so a
rerun shows it again without sampling again."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import streamlit as st

from explorer.generate_inputs import pace_control
from explorer.generation_view import generation_html, probability_legend
from explorer.next_token_charts import describe_settings, distribution_bars, distribution_figure
from explorer.plain_text import plain
from explorer.token_view import token_label
from explorer.widgets import chart
from lm.checkpoint import Checkpoint
from lm.generate import BrokenModelError, Sampling, Step, generate

REDRAW_SECONDS = 0.1  # while streaming, redraw the text at most this often


@dataclass
class Generation:
    """One press of Generate, kept in the session so reruns show it without sampling again;
    steps grow while it streams, and stay if a rerun interrupts it."""

    model: str  # the checkpoint folder
    prompt_ids: list[int]  # what the model continued (<|endoftext|> for an empty prompt)
    settings: Sampling
    pace: float | None = None  # tokens shown per second; None: as they came
    steps: list[Step] = field(default_factory=list)
    seconds: float = 0.0  # the model's own time, without the pace's waits
    finished: bool = False

    def summary(self, end_id: int | None) -> str:
        speed = f" · {len(self.steps) / self.seconds:,.1f} tokens/s" if self.seconds > 0 else ""
        if self.pace:
            speed += f", shown at {self.pace:g}/s"
        ending = ""
        if not self.finished:
            ending = " · interrupted"
        elif self.steps and self.steps[-1].token_id == end_id:
            ending = " · stopped at <|endoftext|>"
        return (
            f"{len(self.steps):,} new tokens in {self.seconds:.2f} s{speed} · "
            f"{describe_settings(self.settings)} · seed {self.settings.seed}{ending}"
        )


def write_at_once(checkpoint: Checkpoint, prompt_ids: list[int], settings: Sampling, end_id: int | None) -> None:
    """The Generate button and the writing speed, the text it writes, and the last generation of this model explained."""
    button_col, pace_col = st.columns([1, 3], vertical_alignment="bottom")
    clicked = button_col.button("Generate", type="primary", disabled=not prompt_ids, key="gen_button")
    with pace_col:
        pace = pace_control()
    st.html(probability_legend())
    status, box = st.empty(), st.empty()
    if clicked:
        try:
            stream(checkpoint, prompt_ids, settings, pace, status, box)
        except BrokenModelError as exc:
            st.error(plain(exc))
            return
    gen = st.session_state.get("gen")
    if gen is not None and gen.model == str(checkpoint.path) and gen.steps:
        explain(gen, checkpoint.tokenizer, end_id, status, box)


def timed(steps: Iterator[Step]) -> Iterator[tuple[Step, float]]:
    """Each step with the seconds the model took to make it."""
    while True:
        tick = time.perf_counter()
        step = next(steps, None)
        if step is None:
            return
        yield step, time.perf_counter() - tick


def stream(checkpoint: Checkpoint, prompt_ids: list[int], settings: Sampling, pace: float | None, status, box) -> None:
    """Sample into the session state, redrawing the text as tokens arrive: the n-th token not
    before n / pace seconds (sampling itself is untouched, so the text is the same at any pace).
    Any press on the page meanwhile stops it at the next token, keeping what was written."""
    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    gen = Generation(str(checkpoint.path), prompt_ids, settings, pace)
    st.session_state["gen"] = gen
    st.session_state["gen_position"] = 0
    prompt = tokenizer.decode(prompt_ids)
    started, drawn = time.perf_counter(), 0.0  # the first token is drawn at once
    for n, (step, seconds) in enumerate(timed(generate(model, tokenizer, prompt_ids, settings))):
        gen.steps.append(step)
        gen.seconds += seconds
        if pace:
            time.sleep(max(0.0, started + n / pace - time.perf_counter()))
        now = time.perf_counter()
        if pace or now - drawn >= REDRAW_SECONDS:
            box.html(generation_html(prompt, gen.steps))
            status.caption(f"Writing… {len(gen.steps):,} tokens")
            drawn = now
    gen.finished = True


def explain(gen: Generation, tokenizer, end_id: int | None, status, box) -> None:
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
