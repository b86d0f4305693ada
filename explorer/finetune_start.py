"""Starting a fine-tune from the page: what it costs (the parameters that train and their share,
memory, time), its name, and Start, which launches `python -m lm finetune` in a run folder."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from explorer import runs, workspace
from explorer.finetune_estimate import (
    example_lengths, memory_bytes, run_time, timing_config, trainable_parameters, trains_everything, typical_length,
)
from explorer.finetune_form import FinetuneChoice, finetune_form
from explorer.finetune_runs import METHODS, FinetuneRequest, start_finetune
from explorer.plain_text import plain
from explorer.run_start import process_startup, step_costs
from explorer.training_view import format_bytes, format_duration, rough_duration
from explorer.url_state import BIND
from explorer.widgets import holds_its_own_text
from lm.device import resolve_device
from lm.estimate import run_threads
from lm.finetune.loop import choose_trainable
from lm.finetune.timing import step_ratio
from lm.model import GPTConfig
from lm.sizing import physical_memory_bytes


@st.cache_data(show_spinner="Measuring the examples' lengths…", max_entries=16)
def _typical_length(method: str, data: str, _examples, spec: str, _tokenizer, block_size: int) -> int:
    """Cached on the data and the tokenizer's name (the examples and tokenizer themselves are not hashed)."""
    return typical_length(example_lengths(method, _examples, _tokenizer, block_size), block_size)


@st.cache_resource(show_spinner="Timing a step of what trains against one that trains every weight…", ttl=600,
                   max_entries=16)
def _step_ratio(config: GPTConfig, request: FinetuneRequest, batch: int, length: int, device: str, threads: int) -> float:
    """Timed once per model, choice of what trains and batch for ten minutes (the machine's load changes)."""
    return step_ratio(config, lambda model: choose_trainable(model, request), batch, length, device, threads)


def show_estimates(choice: FinetuneChoice) -> str | None:
    """Four figures and how they were found, beside the data (on a projector's first screen);
    returns why it cannot train here, if it cannot."""
    with choice.estimates if choice.estimates is not None else st.container():
        return _estimates(choice)


def _estimates(choice: FinetuneChoice) -> str | None:
    request, config = choice.request, choice.model
    labels = len({e.label for e in choice.data.examples}) if request.method == "classify" else 2
    try:
        counts = trainable_parameters(config, request, labels)
    except ValueError as exc:  # LoRA targets that match no layer of this model
        return str(exc)
    length = _typical_length(request.method, choice.data.data or choice.data.description, choice.data.examples,
                             choice.tokenizer.name, choice.tokenizer, config.block_size)
    memory = memory_bytes(config, counts, request.batch_size, length, request.method == "dpo")
    available = physical_memory_bytes()
    (trainable_col, memory_col), (step_col, total_col) = st.columns(2), st.columns([1, 2])  # the whole run's is widest
    trainable_col.metric("Parameters that train", f"{counts[0]:,}", f"{counts[0] / counts[1]:.2%} of {counts[1]:,}",
                         delta_color="off", delta_arrow="off")
    memory_col.metric("Memory to train", format_bytes(memory))
    if available and memory > available:
        return f"this needs about {format_bytes(memory)} of memory; the machine has {format_bytes(available)}"
    device = resolve_device("auto")
    threads = run_threads(request.threads or workspace.threads_per_run())
    costs = step_costs(timing_config(request, config, length, device, threads), config)
    what_trains = replace(request, upload=None, max_steps=0, lr=0.0, eval_interval=0, seed=0, data="")  # the cache key
    ratio = 1.0 if trains_everything(request) else _step_ratio(config, what_trains, request.batch_size, length, device, threads)
    timed = run_time(request, costs, process_startup(), ratio)
    where = device if device != "cpu" else f"the CPU with {threads} thread{'s' if threads > 1 else ''}"
    how = (
        f"Timed here on {where}: a few full training steps of this model, {request.batch_size} examples of "
        f"{length} tokens (a typical batch of this data), plus evaluations every {request.eval_interval} steps and the "
        "start" + ("" if trains_everything(request) else
                   f"; a step of what trains here ({'LoRA' if request.lora_rank else 'the last blocks'}) took "
                   f"{ratio:.2f}× one that trains every weight")
        + ("; DPO counts both answers and the reference model's pass." if request.method == "dpo" else ".")
        + " The evaluation of the starting and the trained model on held-out examples comes on top. "
        "Runs training at the same time slow each other down."
    )
    step_col.metric("Time per step", f"≈ {format_duration(timed.step_seconds)}", help=how)
    total_col.metric(f"{request.max_steps:,} steps", f"≈ {rough_duration(timed.run_seconds)}", help=how)
    return None


def new_finetune_section(watching: bool) -> None:
    """The form in an expander, open while no run is watched. Closed, it is not drawn (its elements
    would be redrawn on every rerun of the page, as explorer.run_start says for the Train page's),
    unless it holds an uploaded file or a pasted text, which a widget that is not drawn would lose;
    its other settings Streamlit keeps meanwhile."""
    expander = st.expander("➕ Start a fine-tune", expanded=not watching, key="ft_new_run", on_change="rerun")
    if not expander.open and not holds_its_own_text("ft") and not holds_an_upload():
        return
    with expander:
        start_section(finetune_form())


def holds_an_upload() -> bool:
    return any(st.session_state.get(f"ft_upload_{method}") is not None for method in METHODS)


def start_section(choice: FinetuneChoice | None) -> None:
    """The estimates, the run's name and Start (disabled while the form is incomplete)."""
    if choice is None:
        st.button("▶ Start fine-tuning", type="primary", disabled=True, key="ft_start")
        return
    problem = show_estimates(choice)
    if problem:
        st.error(f"This cannot train here: {plain(problem)}.")
    name_column, button_column = st.columns([3, 1], vertical_alignment="bottom")
    suggested = runs.free_name(choice.name_base)
    typed = name_column.text_input("Run name", key="ft_name", bind=BIND, placeholder=suggested, max_chars=64,
                                   help=f"The run's folder in {workspace.runs_place()}. Empty: {suggested}.")
    name = typed.strip() or suggested
    bad_name = runs.name_problem(name)
    if bad_name:
        name_column.error(plain(bad_name))
    limit = workspace.run_limit_problem(runs.list_runs())
    if limit:
        st.warning(f"Not now: {limit}.", icon="⏳")
    blocked = bool(problem or bad_name or limit)
    if button_column.button("▶ Start fine-tuning", type="primary", disabled=blocked, key="ft_start"):
        try:
            start_finetune(name, choice.request)
        except runs.RunError as exc:
            st.error(f"Not started: {plain(exc)}")
            return
        st.query_params["run"] = name
        st.session_state.pop("ft_name", None)
        st.rerun()
