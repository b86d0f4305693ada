"""The Fine-tune page's view of one run (?run=NAME): what it is, its state and progress, its
curves (the method's own first: accuracy, exact match, or DPO's reward margin), then before
and after; redrawn every second while it trains, from the folder the trainer writes (a rerun
of the whole page in between shows what the last refresh read: explorer.as_shown)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from explorer import presenter, runs
from explorer.as_shown import as_last_shown
from explorer.finetune_charts import accuracy_figure, exact_match_figure, has, logp_figure, reward_margin_figure
from explorer.finetune_compare import classify_comparison, generation_comparison, try_a_message
from explorer.finetune_runs import LORA_TARGETS, METHODS, finetune_record, read_evaluation, trained_counts
from explorer.live_files import run_metrics
from explorer.paths import FileStamp
from explorer.plain_text import plain
from explorer.run_watch import FRESH_S, reread, run_actions, state_messages
from explorer.training_view import STATES, balance_figure, has_balance_loss, loss_figure
from explorer.url_state import BIND
from explorer.widgets import chart
from lm.run_folder import tokenizer_vocab_size

TABS = ["📈 Training", "⚖️ Before and after", "💬 Try a message"]
LOSS_TITLES = {"classify": "Loss: how surprised the model is by the true class",
               "dpo": "DPO loss: falls as the chosen answer wins"}


def describe_run(record: dict, counts: tuple[int, int] | None) -> str:
    """'Classify · from shakespeare-demo · sms-spam · LoRA rank 8 on attention · 1.2% of 812,000 parameters train'."""
    method = METHODS.get(record.get("method"), (str(record.get("method")), ""))[0]
    source, data = record.get("source") or record.get("from"), record.get("data")
    parts = [method, *([f"from {Path(str(source)).name}"] if source else []), *([Path(str(data)).name] if data else [])]
    lora = record.get("lora") if isinstance(record.get("lora"), dict) else None
    rank = record.get("lora_rank") or (lora or {}).get("rank")
    if rank:
        targets = record.get("lora_targets") or (lora or {}).get("targets") or []
        targets = targets.split(",") if isinstance(targets, str) else targets
        parts.append(f"LoRA rank {rank} on {' and '.join(LORA_TARGETS.get(t, t).split(' (')[0] for t in targets)}")
    if counts:
        parts.append(f"{counts[0]:,} of {counts[1]:,} parameters train ({counts[0] / counts[1]:.1%})")
    return " · ".join(plain(p) for p in parts)


def title_bar(info: runs.RunInfo, about: str) -> None:
    """The run's name and state, what it is (behind the title's (?) in presenter view: the picture
    needs the room), and Stop while it trains, Close after."""
    label, colour = STATES.get(info.state, (info.state, "gray"))
    title, buttons = st.columns([3, 1], vertical_alignment="center")
    title.subheader(f"Fine-tune {plain(info.name)} :{colour}-badge[{label}]", help=about if presenter.is_on() else None)
    if not presenter.is_on():
        title.caption(about)
    run_actions(buttons, info, "ft")


@dataclass(frozen=True)
class Look:
    """What the live view shows of a run, as one refresh read it from the run's folder."""
    info: runs.RunInfo
    record: dict | None  # how it was fine-tuned (finetune_record); None: not a fine-tune run
    counts: tuple[int, int] | None
    stamp: FileStamp | None  # the metrics file's version, None while it has none
    metrics: list[dict]
    evaluation: dict


def look_at(info: runs.RunInfo) -> Look:
    return Look(info, finetune_record(info.folder), trained_counts(info.folder),
                *run_metrics(info.folder, info.active), read_evaluation(info.folder))


def live_view(name: str, was_active: bool) -> None:
    """Run as a fragment every second while the run trains (run_watch.REFRESH_S)."""
    fresh = reread(name, was_active)
    if fresh is None:
        return
    kinds = (fresh.name, fresh.state, fresh.stop_requested)
    look = as_last_shown("ft_watch_shown", kinds, FRESH_S, lambda: look_at(fresh))
    info, record, metrics, evaluation = look.info, look.record, look.metrics, look.evaluation
    if record is None:
        st.warning(f"{plain(name)} is not a fine-tune run: watch it on the Train page.")
        return
    title_bar(info, describe_run(record, look.counts))
    state_messages(info, metrics, "Starting: loading the model and the data, and answering the held-out examples "
                   "before training…", finished_bar=False)  # a finished fine-tune's bar says nothing new
    method = record.get("method")
    shown = TABS if method == "classify" and info.has_checkpoint and not info.active else TABS[:2]
    tabs = st.tabs(shown, key="ft_tab", bind=BIND)
    with tabs[0]:  # the curves need the evaluation's labels, the comparison all of it
        curves(name, look, len((evaluation.get("before") or {}).get("labels") or [0, 0]))
    with tabs[1]:
        if method == "classify":
            classify_comparison(name, evaluation)
        else:
            generation_comparison(evaluation, method)
    if len(shown) == 3:
        with tabs[2]:
            try_a_message(info.folder)


def curves(name: str, look: Look, labels: int) -> None:
    if look.stamp is None or not look.metrics:
        st.info("The curves start with the first steps logged.")
        return
    method = look.record.get("method")
    figures = live_figures(look.stamp, method, tokenizer_vocab_size(look.info.folder), labels, look.metrics)
    first, *rest = figures.items()
    chart(first[1], f"ft_{first[0]}_chart", f"{name}-{first[0]}")
    for column, (key, fig) in zip(st.columns(max(1, len(rest))), rest):
        with column:
            chart(fig, f"ft_{key}_chart", f"{name}-{key}")


@st.cache_resource(max_entries=64, show_spinner=False)
def live_figures(metrics_stamp: FileStamp, method: str, vocab: int | None, labels: int,
                 _metrics: list[dict]) -> dict[str, go.Figure]:
    """The run's curves, the method's own first; built once per version of its metrics file for
    every session watching (never modified afterwards: chart() restyles a copy)."""
    figures = {}
    if method == "classify" and has(_metrics, "val_accuracy") | has(_metrics, "train_accuracy"):
        figures["accuracy"] = accuracy_figure(_metrics, labels)
    if method == "dpo" and has(_metrics, "reward_margin"):
        figures["reward-margin"] = reward_margin_figure(_metrics)
    if method == "instruct" and has(_metrics, "val_exact_match"):
        figures["exact-match"] = exact_match_figure(_metrics)
    uniform = None if vocab is None or method == "classify" else math.log(vocab)
    figures["loss"] = loss_figure(_metrics, uniform)
    if method in LOSS_TITLES:  # not the next token's surprise
        figures["loss"].update_layout(title=LOSS_TITLES[method])
    if method == "dpo" and has(_metrics, "chosen_logp"):
        figures["log-probabilities"] = logp_figure(_metrics)
    if has_balance_loss(_metrics):  # a mixture of experts keeps its routers balanced (lm.finetune.loop)
        figures["balance"] = balance_figure(_metrics)
    return figures
