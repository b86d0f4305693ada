"""Starting a new run from the Train page: the form in its expander, what the planned run will
cost (parameters, memory, time per step), why it cannot train if it cannot, its name, and the
start button."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from explorer import runs, workspace
from explorer.plain_text import plain
from explorer.train_form import run_form
from explorer.workspace import run_limit_problem, runs_place, training_slots
from explorer.training_view import format_bytes, format_duration, rough_duration
from explorer.url_state import BIND
from explorer.widgets import holds_its_own_text
from lm.device import device_precision, resolve_device
from lm.estimate import StepCosts, estimate, measure_costs, run_threads, startup_seconds, tokenizer_seconds
from lm.model import GPTConfig
from lm.plan import RunPlan, plan_run
from lm.sizing import parameter_count, training_memory_bytes
from lm.train_config import TrainConfig


@st.cache_resource(show_spinner="Timing a few training steps of this model here…", ttl=600, max_entries=64)
def step_costs(cfg: TrainConfig, model: GPTConfig) -> StepCosts:
    """Timed once per model, batch and schedule for ten minutes: the machine's load changes."""
    return measure_costs(cfg, model)


@st.cache_resource(show_spinner="Timing how long a training process takes to start…")
def process_startup() -> float:
    return startup_seconds()


@st.cache_resource(show_spinner="Timing the tokenizer's training on this text…", ttl=600, max_entries=16)
def tokenizer_time(data: str, tokenizer: str, val_fraction: float, text: str | None) -> float:
    return tokenizer_seconds(TrainConfig(data=data, tokenizer=tokenizer, val_fraction=val_fraction), text)


def show_estimates(plan: RunPlan) -> None:
    cfg = replace(plan.config, threads=run_threads(plan.config.threads or workspace.threads_per_run()))
    model = plan.model
    params, memory, step_time, total = st.columns(4)
    params.metric("Parameters", f"{parameter_count(model):,}")
    memory.metric("Memory to train", format_bytes(training_memory_bytes(model, cfg.batch_size)))
    if plan.problem:  # nothing to time: a run that cannot train (its problem is shown below)
        step_time.metric("Time per step", "—")
        total.metric(f"{cfg.max_steps:,} steps", "—")
        return
    startup = process_startup() + tokenizer_time(cfg.data, cfg.tokenizer, cfg.val_fraction, plan.text)
    timed = estimate(cfg, step_costs(replace(cfg, max_steps=1, out=""), model), startup)
    step_time.metric("Time per step", f"≈ {format_duration(timed.step_seconds)}")
    total.metric(f"{cfg.max_steps:,} steps", f"≈ {rough_duration(timed.run_seconds)}")
    where = cfg.device if cfg.device != "cpu" else f"the CPU with {cfg.threads} thread{'s' if cfg.threads > 1 else ''}"
    st.caption(
        f"A few steps of this very model timed here, on {where}: {format_duration(timed.training)} of training steps, "
        f"{format_duration(timed.evaluation)} measuring the validation loss and saving, {format_duration(timed.extras)} "
        f"of samples and attention snapshots, {format_duration(timed.startup)} to start (and train the tokenizer). "
        "Runs training at the same time slow each other down."
    )
    st.caption(f"Number format: {device_precision(cfg.precision, resolve_device(cfg.device)).describe()}.")


NOT_THE_FORM = ("train_compare",)  # the runs table's address parameter, not an input of the form
OPENS = "train_new_run_opens"  # session key: whether the form opens on this visit to the page, while no run is watched


def new_run_section(watching: bool, listed: list[runs.RunInfo]) -> None:
    """The form for a new run in an expander, open at first while no run is watched and either there
    is no run yet or the address sets the form up (a lesson's step, a shared link): decided once a
    visit, since the address changes with the form's settings (one put back to its default closed
    the form under the user's hands). Closed, the form is not drawn: its seventy-odd elements would
    be redrawn on every rerun of the page. Its settings are kept meanwhile (Streamlit keeps a bound
    widget's value while it is not drawn), but not an uploaded file or a text too long for the
    address: while the text is one of those, it is drawn."""
    if "train_new_run" not in st.session_state:  # the expander's first draw on this visit
        linked = any(key.startswith("train_") and key not in NOT_THE_FORM for key in st.query_params)
        st.session_state[OPENS] = not listed or linked
    opens = not watching and st.session_state[OPENS]
    expander = st.expander("➕ Start a new run", expanded=opens, key="train_new_run", on_change="rerun")
    if not expander.open and not holds_its_own_text("train"):
        return
    with expander:
        chosen = run_form()  # the inputs, then the run they plan, checked once
        if chosen is None:
            start_section(None, listed)
        else:
            choice, name_base = chosen
            start_section(plan_run(choice), listed, name_base)


def start_section(plan: RunPlan | None, listed: list[runs.RunInfo], name_base: str = "run") -> None:
    """The plan's estimates and problem, the run's name and the start button (disabled
    while there is no plan yet: a text or a tokenizer missing); `listed`: every run, as the page
    listed them for this rerun."""
    if plan is None:
        st.button("▶ Start training", type="primary", disabled=True, key="train_start")
        return
    show_estimates(plan)
    if plan.problem:
        st.error(f"This cannot train: {plain(plan.problem)}.")
    name_column, button_column = st.columns([3, 1], vertical_alignment="bottom")
    suggested = runs.free_name(name_base)
    typed = name_column.text_input(
        "Run name", key="train_name", bind=BIND, placeholder=suggested, max_chars=64,
        help=f"The run's folder in {runs_place()}. Empty: {suggested}.",
    )
    name = typed.strip() or suggested
    bad_name = runs.name_problem(name)
    if bad_name:
        name_column.error(plain(bad_name))
    limit = run_limit_problem(listed)
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
            st.error(f"Not started: {plain(exc)}")
            return
        st.query_params["run"] = name
        st.session_state.pop("train_name", None)
        st.rerun()
