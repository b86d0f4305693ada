"""Starting a planned run from the Train page: what it will cost (parameters, memory, time
per step), why it cannot train if it cannot, its name, and the start button."""

from __future__ import annotations

import streamlit as st

from explorer import runs
from explorer.workspace import run_limit_problem, runs_place, training_slots
from explorer.training_view import format_bytes, format_duration, time_estimate
from explorer.url_state import BIND
from lm.plan import RunPlan
from lm.sizing import parameter_count, training_memory_bytes
from lm.speed import measure_training_flops, threads_used


@st.cache_resource(show_spinner="Measuring how fast this device trains…", ttl=600)
def device_flops(device: str, threads: int) -> float:
    return measure_training_flops(device, threads)


def show_estimates(plan: RunPlan) -> None:
    cfg, model = plan.config, plan.model
    speed = device_flops(cfg.device, cfg.threads)
    estimate = time_estimate(cfg, model, speed)
    params, memory, step_time, total = st.columns(4)
    params.metric("Parameters", f"{parameter_count(model):,}")
    memory.metric("Memory to train", format_bytes(training_memory_bytes(model, cfg.batch_size)))
    step_time.metric("Time per step", f"≈ {format_duration(estimate.step_seconds)}")
    total.metric(f"{cfg.max_steps:,} steps", f"≈ {format_duration(estimate.run_seconds)}")
    threads = threads_used(cfg.threads)
    where = cfg.device if cfg.device != "cpu" else f"the CPU with {threads} thread{'s' if threads > 1 else ''}"
    st.caption(
        f"Time = {estimate.flops_per_token / 1e6:,.2f} million FLOPs per token (forward and backward) × "
        f"{estimate.tokens_per_step:,} tokens per step ÷ {speed / 1e9:,.1f} billion FLOPs per second: the fastest of "
        f"a few training steps of a 4-layer, 128-wide GPT, measured on {where}. Very small models run slower than "
        "that; runs training at the same time slow each other down."
    )


def start_section(plan: RunPlan | None, name_base: str = "run") -> None:
    """The plan's estimates and problem, the run's name and the start button (disabled
    while there is no plan yet: a text or a tokenizer missing)."""
    if plan is None:
        st.button("▶ Start training", type="primary", disabled=True, key="train_start")
        return
    show_estimates(plan)
    if plan.problem:
        st.error(f"This cannot train: {plan.problem}.")
    name_column, button_column = st.columns([3, 1], vertical_alignment="bottom")
    suggested = runs.free_name(name_base)
    typed = name_column.text_input(
        "Run name", key="train_name", bind=BIND, placeholder=suggested, max_chars=64,
        help=f"The run's folder in {runs_place()}. Empty: {suggested}.",
    )
    name = typed.strip() or suggested
    bad_name = runs.name_problem(name)
    if bad_name:
        name_column.error(bad_name)
    limit = run_limit_problem(runs.list_runs())
    if limit:
        st.warning(f"Not now: {limit}.", icon="⏳")
    elif training_slots():
        st.caption(f"{training_slots()} runs train at once on this server; a run started while they are busy waits "
                   "in line (its place and the wait are shown) and starts by itself.")
    blocked = bool(plan.problem or bad_name or limit)
    if button_column.button("▶ Start training", type="primary", disabled=blocked, key="train_start"):
        try:
            runs.start_run(name, plan)
        except ValueError as exc:
            st.error(f"Not started: {exc}")
            return
        st.query_params["run"] = name
        st.session_state.pop("train_name", None)
        st.rerun()
