"""Train: start a GPT training run in the background, watch its loss fall live, compare runs."""

import math
import os
from dataclasses import fields
from pathlib import Path

import streamlit as st
import torch

from explorer import runs
from explorer.navigation import PAGES
from explorer.paths import runs_root
from explorer.run_archive import export_run, import_run
from explorer.tokenizers import load_saved, load_tiktoken, saved_tokenizers
from explorer.training_guide import diagnose
from explorer.training_view import (
    STATES, accuracy_figure, format_bytes, format_duration, grad_norm_figure, loss_figure, lr_figure, overlay_figure, progress_text,
    runs_table, has_task_accuracy, time_estimate,
)
from explorer.presenter import control
from explorer.url_state import BIND
from explorer.widgets import chart, corpus_input
from lm.data import CORPORA
from lm.tasks import HELD_OUT, TASK_PREFIX, TASKS, Task, task_tokenizer
from lm.device import available_devices, default_device, describe_device, max_processes
from lm.model import parameter_count, training_memory_bytes
from lm.tokenizer import TokenizerError
from lm.trainer import TrainConfig

HELP = {f.name: f.metadata["help"] for f in fields(TrainConfig)}
HELP["lr"] += "; this page decays it to a tenth of that by the last step"
REPO = Path(__file__).resolve().parents[1]
GPT2 = "r50k_base"
OWN_BPE, SAVED = "Our BPE, trained on this text", "A tokenizer saved on the Tokenizer page"
GPT2_CHOICE = "GPT-2's (r50k_base)"
MODEL_FIELDS = {
    "n_layer": "Layers", "n_head": "Heads per layer", "n_embd": "Width (n_embd)", "block_size": "Context (tokens)",
}
TRAINING_INPUTS = {  # field: (label, min, max, step)
    "max_steps": ("Steps", 1, 1_000_000, 100),
    "batch_size": ("Batch (sequences)", 1, 4096, 1),
    "lr": ("Learning rate", 1e-6, 1.0, 1e-4),
    "warmup_steps": ("Warmup steps", 0, 1_000_000, 10),
    "dropout": ("Dropout", 0.0, 0.9, 0.05),
    "eval_every": ("Validate every (steps)", 1, 1_000_000, 10),
    "sample_every": ("Sample every (steps)", 0, 1_000_000, 10),
    "log_every": ("Log every (steps)", 1, 10_000, 1),
}
LINKED_PAGES = {"app_pages/attention.py": "Look at its attention", "app_pages/generate.py": "Generate text with it"}
CUSTOM = "custom"
BASIC_INPUTS = ("max_steps", "batch_size", "lr")  # the rest are hidden in presenter view
TEXT_CHOICE, TASK_CHOICE = "A text", "A synthetic task"


@st.cache_resource(show_spinner="Measuring how fast this device trains…", ttl=600)
def device_flops(device: str, threads: int) -> float:
    return runs.measure_training_flops(device, threads)


@st.cache_data(max_entries=4, show_spinner="Counting tokens…")
def token_count(text: str, spec: str, _tokenizer) -> int:
    """Cached on the text and the tokenizer's spec (the tokenizer object itself is not hashed)."""
    return len(_tokenizer.encode(text))


def apply_preset() -> None:
    """The chosen task's own settings, or the chosen size's (leaving the inputs alone for custom sizes)."""
    if st.session_state.get("train_what") == TASK_CHOICE:
        task = TASKS[st.session_state.get("train_task", next(iter(TASKS)))]
        for name in (*MODEL_FIELDS, *TRAINING_INPUTS, "seed"):  # its seed: the one timed for its preset
            st.session_state[f"train_{name}"] = task.preset[name]
        return
    st.session_state.setdefault("train_preset", next(iter(runs.PRESETS)))
    preset = runs.PRESETS.get(st.session_state["train_preset"])
    if preset is not None:
        for name, value in preset.options.items():
            st.session_state[f"train_{name}"] = value


def sizes_changed() -> None:
    st.session_state["train_preset"] = CUSTOM


def preset_options() -> dict:
    """What the chosen task or size sets (the first size's for custom sizes): the inputs' defaults,
    so a link lists only the settings changed from them, and reopens with exactly these."""
    if st.session_state.get("train_what") == TASK_CHOICE:
        return TASKS[st.session_state.get("train_task", next(iter(TASKS)))].preset
    preset = runs.PRESETS.get(st.session_state.get("train_preset")) or next(iter(runs.PRESETS.values()))
    return preset.options


# --- choosing what to train ---------------------------------------------------------------


def tokenizer_input() -> tuple[str, int, object | None] | None:
    """(the trainer's tokenizer option, the vocabulary size, the tokenizer when it exists already)."""
    source = st.radio("Tokenizer", [OWN_BPE, SAVED, GPT2_CHOICE], key="train_tok_source", bind=BIND)
    if source == OWN_BPE:
        vocab = st.number_input(
            "Vocabulary size", min_value=257, max_value=16_384, value=512, step=64, key="train_vocab", bind=BIND,
            help="256 byte tokens + the merges to learn + 1 special token (<|endoftext|>).",
        )
        st.caption("Trained on the text when the run starts (seconds for Tiny Shakespeare).")
        return f"bpe:{int(vocab)}", int(vocab), None
    if source == SAVED:
        saved = saved_tokenizers()
        if not saved:
            st.info("No saved tokenizer yet: train one on the Tokenizer page and save it.")
            return None
        name = st.selectbox("Saved tokenizer", list(saved), key="train_saved_tok", bind=BIND)
        try:
            tokenizer = load_saved(saved[name])
        except TokenizerError as exc:
            st.error(f"{name} cannot be used: {exc}")
            return None
        return str(saved[name].resolve()), tokenizer.vocab_size, tokenizer
    try:
        tokenizer = load_tiktoken(GPT2)
    except TokenizerError as exc:
        st.error(str(exc))
        return None
    st.caption(
        f"{tokenizer.vocab_size:,} tokens: its embedding table alone holds {tokenizer.vocab_size:,} × width "
        "parameters, most of a small model. It needs tiktoken's r50k_base file (downloaded once, then cached)."
    )
    return GPT2, tokenizer.vocab_size, tokenizer


def task_input() -> Task:
    names = list(TASKS)
    name = st.radio(
        "Task", names, key="train_task", bind=BIND, on_change=apply_preset, captions=[TASKS[n].description for n in names],
    )
    st.caption(
        f"Examples are made up as training goes, one token per character. The accuracy is the share of "
        f"{HELD_OUT} held-out examples (never trained on) that the model answers exactly right."
    )
    return TASKS[name]


def model_inputs(sizes: bool = True) -> None:
    """The model's size: from a preset (`sizes`), else from the chosen task's settings."""
    if sizes:
        names = [*runs.PRESETS, CUSTOM]
        st.radio(
            "Size", names, key="train_preset", bind=BIND, horizontal=True, on_change=apply_preset,
            captions=[p.description for p in runs.PRESETS.values()] + ["your own sizes: change any number below"],
        )
    else:
        st.caption("Set for this task: it learns in about two minutes on a laptop CPU. Change any number below.")
    if "train_n_layer" not in st.session_state:  # after the radio: a size or task from a link is the one applied
        apply_preset()
    defaults = preset_options()
    for column, (name, label) in zip(st.columns(len(MODEL_FIELDS)), MODEL_FIELDS.items()):
        column.number_input(
            label, min_value=1, max_value=65_536, value=defaults[name], step=1, key=f"train_{name}", bind=BIND,
            help=HELP[name], on_change=sizes_changed,
        )


def training_inputs() -> None:
    inputs, defaults = list(TRAINING_INPUTS.items()), preset_options()
    for start in range(0, len(inputs), 4):
        for column, (name, (label, low, high, step)) in zip(st.columns(4), inputs[start : start + 4]):
            with column, control(f"train_{name}", advanced=name not in BASIC_INPUTS):
                st.number_input(
                    label, min_value=low, max_value=high, value=defaults[name], step=step,
                    format="%g" if isinstance(step, float) else None, key=f"train_{name}", bind=BIND, help=HELP[name],
                )
    seed, device_column, processes_column, threads = st.columns(4)
    with seed, control("train_seed"):
        st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=defaults.get("seed", 1337), step=1, key="train_seed", bind=BIND,
                        help=HELP["seed"])
    devices = available_devices()
    with device_column, control("train_device", advanced=True):
        device = st.selectbox("Device", devices, key="train_device", bind=BIND, help=HELP["device"])
    limit = max_processes(device)
    if st.session_state.get("train_processes", 1) > limit:  # another device was chosen
        st.session_state["train_processes"] = limit
    with processes_column, control("train_processes", advanced=True):
        processes = st.number_input(
            "Processes", min_value=1, max_value=limit, step=1, key="train_processes", bind=BIND, disabled=limit == 1,
            help="Training processes working together (PyTorch DDP, started by torchrun), at most one per GPU: each "
            "computes the gradient on its own share of every batch, and they average them.",
        )
    cores = os.cpu_count() or 1
    with threads, control("train_threads", advanced=True):
        st.number_input(
            "CPU threads", min_value=0, max_value=cores, value=max(1, cores - 1), step=1, key="train_threads", bind=BIND,
            help=HELP["threads"] + "; by default one core is left free, so this page stays responsive",
        )
    about = "Devices here: " + "; ".join(f"{d} = {describe_device(d)}" for d in devices) + "."
    if processes > 1:
        batch = st.session_state["train_batch_size"]
        about += f" {processes} processes train together: a step learns from {processes} × {batch} = {processes * batch:,} "
        about += f"sequences, {batch} in each process" + (
            ", each on its own GPU." if device.startswith("cuda") else ". On the CPU they share its cores: this shows "
            "how it works, not a speed-up."
        )
    st.caption(about)


def options(data: str, tokenizer: str) -> dict:
    """The TrainConfig fields the inputs above set."""
    chosen = {name: st.session_state[f"train_{name}"] for name in (*MODEL_FIELDS, *TRAINING_INPUTS, "seed", "device", "threads")}
    if st.session_state["train_processes"] > 1 and chosen["device"].startswith("cuda"):
        chosen["device"] = "cuda"  # each process takes the GPU of its rank
    return {**chosen, "min_lr": chosen["lr"] / 10, "data": data, "tokenizer": tokenizer}


def show_estimates(cfg: TrainConfig, vocab_size: int) -> None:
    model = cfg.model_config(runs.padded_vocab_size(vocab_size))
    speed = device_flops(cfg.device, cfg.threads)
    estimate = time_estimate(cfg, model, speed)
    params, memory, step_time, total = st.columns(4)
    params.metric("Parameters", f"{parameter_count(model):,}")
    memory.metric("Memory to train", format_bytes(training_memory_bytes(model, cfg.batch_size)))
    step_time.metric("Time per step", f"≈ {format_duration(estimate.step_seconds)}")
    total.metric(f"{cfg.max_steps:,} steps", f"≈ {format_duration(estimate.run_seconds)}")
    threads = cfg.threads or torch.get_num_threads()
    where = cfg.device if cfg.device != "cpu" else f"the CPU with {threads} thread{'s' if threads > 1 else ''}"
    st.caption(
        f"Time = {estimate.flops_per_token / 1e6:,.2f} million FLOPs per token (forward and backward) × "
        f"{estimate.tokens_per_step:,} tokens per step ÷ {speed / 1e9:,.1f} billion FLOPs per second: the fastest of "
        f"a few training steps of a 4-layer, 128-wide GPT, measured on {where}. Very small models run slower than "
        "that; runs training at the same time slow each other down."
    )


def setup() -> None:
    learn = st.radio(
        "What to learn", [TEXT_CHOICE, TASK_CHOICE], horizontal=True, key="train_what", bind=BIND, on_change=apply_preset,
        captions=["to write like it", "a small puzzle, to watch how attention solves it"],
    )
    if learn == TASK_CHOICE:
        st.subheader("The task")
        task = task_input()
    else:
        st.subheader("The text and its tokenizer")
        data_column, tokenizer_column = st.columns(2)
        with data_column:
            corpus = corpus_input("train")
        with tokenizer_column:
            tokenizer = tokenizer_input()
    st.subheader("The model")
    model_inputs(sizes=learn != TASK_CHOICE)
    st.subheader("Training")
    training_inputs()
    if learn == TASK_CHOICE:
        chosen = {**task.preset, **options(f"{TASK_PREFIX}{task.name}", task.preset["tokenizer"])}
        cfg = TrainConfig.from_dict(chosen)
        show_estimates(cfg, task_tokenizer().vocab_size)
        start_section(cfg, chosen, task_tokenizer().vocab_size, None, task.name)
        return
    if corpus is None or tokenizer is None:
        st.button("▶ Start training", type="primary", disabled=True, key="train_start")
        return
    text, _ = corpus
    spec, vocab_size, tokenizer_object = tokenizer
    source = st.session_state["train_source"]
    registered = next((c for c in CORPORA.values() if c.title == source), None)
    chosen = options(registered.name if registered else runs.DATA_FILE, spec)
    cfg = TrainConfig.from_dict(chosen)
    show_estimates(cfg, vocab_size)
    corpus_name = registered.name if registered else "upload" if source.startswith("Upload") else "pasted"
    size = len(text.encode("utf-8")) if tokenizer_object is None else token_count(text, spec, tokenizer_object)
    start_section(cfg, chosen, vocab_size, None if registered else text, f"{st.session_state['train_preset']}-{corpus_name}",
                  max_tokens=size, token_bound=tokenizer_object is None)


def start_section(cfg: TrainConfig, chosen: dict, vocab_size: int, text: str | None, name_base: str,
                  max_tokens: int | None = None, token_bound: bool = False) -> None:
    """The plan's problems, the run's name and the start button. `text` (an upload or a paste)
    is saved in the run; `max_tokens` is None for a task, which makes its examples as it goes."""
    problem = None
    try:
        runs.check_plan(cfg, vocab_size, max_tokens, token_bound=token_bound)
    except ValueError as exc:
        problem = str(exc)
    if problem:
        st.error(f"This cannot train: {problem}.")

    name_column, button_column = st.columns([3, 1], vertical_alignment="bottom")
    suggested = runs.free_name(name_base)
    typed = name_column.text_input(
        "Run name", key="train_name", bind=BIND, placeholder=suggested, max_chars=64,
        help=f"The run's folder inside {runs_root()}/. Empty: {suggested}.",
    )
    name = typed.strip() or suggested
    bad_name = runs.name_problem(name)
    if bad_name:
        name_column.error(bad_name)
    if button_column.button("▶ Start training", type="primary", disabled=bool(problem or bad_name), key="train_start"):
        try:
            runs.start_run(name, chosen, text=text, processes=st.session_state["train_processes"])
        except ValueError as exc:
            st.error(f"Not started: {exc}")
            return
        st.query_params["run"] = name
        st.session_state.pop("train_name", None)
        st.rerun()


# --- watching a run ---------------------------------------------------------------------------


def run_device(options: dict) -> str:
    """The device a run trains on ("auto" is the best this machine has)."""
    device = options.get("device", "auto")
    return default_device() if device == "auto" else device


def model_links(name: str) -> None:
    """To the pages that use a model, where they exist in this app; they preselect it."""
    registered = {page.path for page in PAGES}
    links = [(path, label) for path, label in LINKED_PAGES.items() if path in registered and (REPO / path).exists()]
    for column, (path, label) in zip(st.columns(max(1, len(links))), links):
        column.page_link(path, label=f"{label} ➡️", query_params={"model": name})


def live_view(name: str, was_active: bool) -> None:
    """Rerun every second while the run trains: it rereads the folder the trainer writes."""
    try:
        info = runs.run_info(runs.run_folder(name))
    except runs.RunError as exc:
        st.warning(str(exc))
        return
    if was_active and not info.active:
        st.rerun()  # it just ended: redraw the whole page (the table, the links) and stop the timer
    label, colour = STATES.get(info.state, (info.state, "gray"))
    title, stop = st.columns([5, 1], vertical_alignment="center")
    title.subheader(f"Run {name} :{colour}-badge[{label}]")
    if info.active:
        stop.button("⏹ Stop", key="train_stop", on_click=runs.stop_run, args=(name,), disabled=info.stop_requested,
                    help="The run saves a checkpoint, then ends; you keep the model trained so far.")
    elif stop.button("✖ Close", key="train_close", help="Stop watching this run (it stays in the table below)."):
        del st.query_params["run"]
        st.rerun()
    metrics, samples = runs.read_metrics(info.folder), runs.read_samples(info.folder)
    if info.max_steps:
        text = progress_text(info.step, info.max_steps, metrics, info.active)
        st.progress(min(1.0, info.step / info.max_steps), text=text)
    if info.error:
        st.error(f"The run {info.state}: {info.error}")
    if info.stop_requested and info.active:
        st.info("Stopping: the run saves a checkpoint, then ends.")
    if info.state == "starting":
        st.info("Starting: loading the text, training the tokenizer and building the model…")
    for flag in diagnose(metrics, samples, info.options, info.state, info.error, run_device(info.options)):
        st.warning(f"**{flag.title}.** {flag.evidence} {flag.advice}", icon="🧭")
    if metrics:
        vocab = runs.tokenizer_vocab_size(info.folder)
        uniform = None if vocab is None else math.log(vocab)
        chart(loss_figure(metrics, uniform), "train_loss_chart", f"{name}-loss")
        if has_task_accuracy(metrics):  # a synthetic task: how often it answers exactly right
            chart(accuracy_figure(metrics), "train_accuracy_chart", f"{name}-accuracy")
        left, right = st.columns(2)
        with left:
            chart(lr_figure(metrics), "train_lr_chart", f"{name}-learning-rate")
        with right:
            chart(grad_norm_figure(metrics), "train_grad_chart", f"{name}-gradient-norm")
    if samples:
        if has_task_accuracy(metrics):
            st.markdown(f"**How the model answers held-out examples at step {samples[-1]['step']:,}** (greedy)")
        else:
            st.markdown(f"**What the model writes at step {samples[-1]['step']:,}**, starting from nothing")
        st.code(samples[-1].get("text", ""), language=None, wrap_lines=True)
    if info.has_checkpoint and not info.active:
        model_links(name)


# --- all runs ---------------------------------------------------------------------------------


def runs_section() -> None:
    st.header("All runs")
    infos = runs.list_runs()
    if not infos:
        st.caption(f"No training runs yet in `{runs_root()}/`.")
        return
    st.dataframe(runs_table(infos), hide_index=True, width="stretch")
    names = [info.name for info in infos]
    with_metrics = [info.name for info in infos if runs.read_metrics(info.folder)]
    previous = st.session_state.get("train_compare") if st.session_state.get("train_compare_chosen") else None
    st.session_state["train_compare"] = [n for n in previous if n in with_metrics] if previous else with_metrics[:3]
    compare = st.multiselect(
        "Compare the loss curves of", with_metrics, key="train_compare",
        on_change=lambda: st.session_state.update(train_compare_chosen=True),
    )
    if compare:
        curves = {n: runs.read_metrics(runs.run_folder(n)) for n in compare}
        chart(overlay_figure(curves), "train_overlay", "loss-curves")

    pick_column, watch_column, export_column, delete_column = st.columns([4, 1, 1, 1], vertical_alignment="bottom")
    pick = pick_column.selectbox("Run", names, key="train_pick")
    picked = next(info for info in infos if info.name == pick)
    export_column.download_button(
        "⬇ Export", data=lambda: export_run(picked.folder), file_name=f"{pick}.zip", mime="application/zip",
        key="train_export", width="stretch", disabled=picked.active, on_click="ignore",
        help="The run's folder as a zip (model, metrics, samples), to import on another machine and compare curves.",
    )
    if watch_column.button("📈 Watch", key="train_watch", width="stretch"):
        st.query_params["run"] = pick
        st.rerun()
    if delete_column.button("🗑 Delete…", key="train_delete", width="stretch"):
        st.session_state["train_confirm_delete"] = pick
    if st.session_state.get("train_confirm_delete") == pick:
        confirm_delete(picked)


def import_section() -> None:
    """Bring in a run exported elsewhere (a classmate's), to watch it and overlay its curve."""
    upload = st.file_uploader("A run exported from the Train page (.zip)", type="zip", key="train_import_file")
    if upload is None:
        return
    name = st.text_input("Name it", value=runs.free_name(Path(upload.name).stem[:50] or "imported"), key="train_import_name")
    if st.button("Import", key="train_import", type="primary"):
        try:
            folder = import_run(upload.getvalue(), name.strip())
        except runs.RunError as exc:
            st.error(str(exc))
            return
        st.success(f"Imported as **{folder.name}**: it is in the table above, and its curve can be compared.")


def confirm_delete(info: runs.RunInfo) -> None:
    still = " It is still training: it will be stopped." if info.active else ""
    st.warning(
        f"Delete the run **{info.name}** and everything in it (model, metrics, samples)?{still} This cannot be undone."
    )
    yes, no, _ = st.columns([1, 1, 3])
    if yes.button("Yes, delete it", type="primary", key="train_delete_yes"):
        try:
            runs.delete_run(info.name)
        except runs.RunError as exc:
            st.error(str(exc))
            return
        st.session_state.pop("train_confirm_delete", None)
        if st.query_params.get("run") == info.name:
            del st.query_params["run"]
        st.rerun()
    if no.button("Cancel", key="train_delete_no"):
        st.session_state.pop("train_confirm_delete", None)
        st.rerun()


st.title("📈 Train")
st.write(
    "Train a small GPT on a text and watch it learn: the loss falls as it gets better at predicting the next "
    "token. Training runs in its own process, so you can refresh, close the tab or start another run meanwhile."
)
watched = st.query_params.get("run")
watched_info = None
if watched:
    try:
        watched_info = runs.run_info(runs.run_folder(watched))
    except runs.RunError as exc:
        st.warning(str(exc))
        del st.query_params["run"]
if watched_info is not None:
    st.fragment(live_view, run_every=1.0 if watched_info.active else None)(watched, watched_info.active)
with st.expander("➕ Start a new run", expanded=watched_info is None):
    setup()
any_active = any(info.active for info in runs.list_runs())
with st.expander("📥 Import a run"):  # before the table, so an imported run is in it at once
    import_section()
st.fragment(runs_section, run_every=3.0 if any_active else None)()
