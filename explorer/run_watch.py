"""The Train page's view of one run (the one named in the address, ?run=NAME): its state,
progress, the training guide's flags, its curves and latest sample, redrawn every second
while it trains; and, once it has a model, links to the pages that use it."""

from __future__ import annotations

import math
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from explorer import runs
from explorer.as_shown import as_last_shown
from explorer.navigation import PAGES
from explorer.paths import FileStamp
from explorer.live_files import run_metrics
from explorer.plain_text import plain
from explorer.run_continue import continue_control
from explorer.training_guide import diagnose
from explorer.training_view import (
    STATES, accuracy_figure, balance_figure, grad_norm_figure, has_balance_loss, has_task_accuracy, loss_figure,
    lr_figure, progress_text,
)
from explorer.widgets import chart
from lm.device import resolve_device
from lm.run_folder import read_samples, tokenizer_vocab_size

REPO = Path(__file__).resolve().parents[1]
REFRESH_S = 1.0  # how often the watched run's view rereads its folder while it trains
FRESH_S = REFRESH_S - 0.2  # under it, so that every refresh reads
LINKED_PAGES = {"app_pages/attention.py": "Look at its attention", "app_pages/generate.py": "Generate text with it"}


def watched_run() -> runs.RunInfo | None:
    """The run the address names, if any; an unknown or unusable name is a warning, dropped from the address."""
    name = st.query_params.get("run")
    if not name:
        return None
    try:
        return runs.run_info(runs.run_folder(name))
    except runs.RunError as exc:
        st.warning(plain(exc))
        del st.query_params["run"]
        return None


def model_links(name: str) -> None:
    """To the pages that use a model, where they exist in this app; they preselect it."""
    registered = {page.path for page in PAGES}
    links = [(path, label) for path, label in LINKED_PAGES.items() if path in registered and (REPO / path).exists()]
    for column, (path, label) in zip(st.columns(max(1, len(links))), links):
        column.page_link(path, label=f"{label} ➡️", query_params={"model": name})


def live_view(name: str, was_active: bool) -> None:
    """Run as a fragment every second while the run trains: it rereads the folder the trainer writes
    (a rerun of the whole page in between shows what the last refresh read: explorer.as_shown)."""
    fresh = reread(name, was_active)
    if fresh is None:
        return
    kinds = (fresh.name, fresh.state, fresh.stop_requested)
    info, stamp, metrics, samples = as_last_shown(
        "train_watch_shown", kinds, FRESH_S, lambda: (fresh, *run_metrics(fresh.folder, fresh.active), read_samples(fresh.folder)),
    )
    title_bar(info)
    state_messages(info, metrics, "Starting: loading the text, training the tokenizer and building the model…")
    device = resolve_device(info.options.get("device", "auto"))
    for flag in diagnose(metrics, samples, info.options, info.state, info.error, device, tokenizer_vocab_size(info.folder)):
        st.warning(f"**{flag.title}.** {flag.evidence} {flag.advice}", icon="🧭")
    if metrics:
        charts(name, info.folder, stamp, metrics)
    if samples:
        if has_task_accuracy(metrics):
            st.markdown(f"**How the model answers held-out examples at step {samples[-1]['step']:,}** (greedy)")
        else:
            st.markdown(f"**What the model writes at step {samples[-1]['step']:,}**, starting from nothing")
        st.code(samples[-1].get("text", ""), language=None, wrap_lines=True)
    if info.has_checkpoint and not info.active:
        model_links(name)


def reread(name: str, was_active: bool) -> runs.RunInfo | None:
    """The watched run as its folder says now, or None (with a warning) when it is gone. A run that
    has just ended reruns the whole page (its table, links and final views) and stops the timer."""
    try:
        info = runs.run_info(runs.run_folder(name))
    except runs.RunError as exc:
        st.warning(plain(exc))
        return None
    if was_active and not info.active:
        st.rerun()
    return info


def state_messages(info: runs.RunInfo, metrics: list[dict], starting: str, finished_bar: bool = True) -> None:
    """The progress bar (for a finished run too, unless not `finished_bar`) and what the run is
    doing: failing, stopping, `starting`, or waiting for a training slot."""
    if info.max_steps and (finished_bar or info.active or info.step < info.max_steps):
        text = progress_text(info.step, info.max_steps, metrics, info.active)
        st.progress(min(1.0, info.step / info.max_steps), text=text)
    if info.error:
        st.error(f"The run {info.state}: {plain(info.error)}")
    if info.stop_requested and info.active:
        st.info("Stopping: the run saves a checkpoint, then ends.")
    if info.state == "starting":
        st.info(starting)
    if info.queue_note:
        st.info(f"Waiting for a free training slot: {info.queue_note}. It starts by itself.", icon="⏳")


def title_bar(info: runs.RunInfo) -> None:
    """The run's name and state, with Stop while it trains; Continue and Close after."""
    label, colour = STATES.get(info.state, (info.state, "gray"))
    title, buttons = st.columns([3, 2], vertical_alignment="center")
    title.subheader(f"Run {info.name} :{colour}-badge[{label}]")
    run_actions(buttons, info, "train")


def run_actions(column, info: runs.RunInfo, key: str) -> None:
    """In `column`, right-aligned: Stop while the run trains; Continue and Close after (widget keys
    `key`_stop, `key`_close). The Train and Fine-tune pages' title bars share them."""
    actions = column.container(horizontal=True, horizontal_alignment="right")  # each button as wide as its label
    if info.active:
        actions.button("⏹ Stop", key=f"{key}_stop", on_click=runs.stop_run, args=(info.name,),
                       disabled=info.stop_requested,
                       help="The run saves a checkpoint, then ends; you keep the model trained so far.")
        return
    with actions:
        continue_control(info)
    if actions.button("✖ Close", key=f"{key}_close", help="Stop watching this run (it stays in the table below)."):
        del st.query_params["run"]
        st.rerun()


def charts(name: str, folder: Path, stamp: FileStamp, metrics: list[dict]) -> None:
    """Loss (with a blind guess's, once the tokenizer is saved), task accuracy, learning rate, gradient norm,
    and a mixture of experts' load balance; `stamp` is the version of the metrics file they were read from."""
    figures = live_figures(stamp, tokenizer_vocab_size(folder), metrics)
    chart(figures["loss"], "train_loss_chart", f"{name}-loss")
    if "accuracy" in figures:  # a synthetic task: how often it answers exactly right
        chart(figures["accuracy"], "train_accuracy_chart", f"{name}-accuracy")
    left, right = st.columns(2)
    with left:
        chart(figures["lr"], "train_lr_chart", f"{name}-learning-rate")
    with right:
        chart(figures["grad"], "train_grad_chart", f"{name}-gradient-norm")
    if "balance" in figures:
        chart(figures["balance"], "train_balance_chart", f"{name}-expert-balance")


@st.cache_resource(max_entries=64, show_spinner=False)
def live_figures(metrics_stamp: FileStamp, vocab: int | None, _metrics: list[dict]) -> dict[str, go.Figure]:
    """A run's curves, built once per version of its metrics file for every session watching it
    (a class watching one run, a student refreshing), not once per viewer every second. Never
    modified afterwards: chart() restyles a copy."""
    uniform = None if vocab is None else math.log(vocab)
    figures = {"loss": loss_figure(_metrics, uniform), "lr": lr_figure(_metrics), "grad": grad_norm_figure(_metrics)}
    if has_task_accuracy(_metrics):
        figures["accuracy"] = accuracy_figure(_metrics)
    if has_balance_loss(_metrics):  # a mixture of experts
        figures["balance"] = balance_figure(_metrics)
    return figures
