"""The Train page's form for a new run: what to learn (a text and its tokenizer, or a
synthetic task), the model's sizes, the training inputs, the device and processes. Each
input lives in a `train_*` session key bound to the URL (links and lessons name them);
`run_form` reads them, in one place, into the RunChoice that lm.plan turns into a run."""

from __future__ import annotations

import os
from dataclasses import fields

import streamlit as st

from explorer.architecture_form import architecture_section, architecture_settings
from explorer.plain_text import plain
from explorer.presenter import control
from explorer.tokenizers import load_saved, load_tiktoken, saved_tokenizers
from explorer.url_state import BIND
from explorer.widgets import corpus_input
from lm.data import CORPORA
from lm.device import available_devices, describe_device, max_processes
from lm.plan import PRESETS, RunChoice, preset_options
from lm.run_folder import DATA_FILE
from lm.tasks import HELD_OUT, TASK_PREFIX, TASKS, Task, task_tokenizer
from lm.tokenizer import TokenizerError
from lm.train_config import TrainConfig

HELP = {f.name: f.metadata["help"] for f in fields(TrainConfig)}
HELP["lr"] += "; this page decays it to a tenth of that by the last step"
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
PRESET_INPUTS = (*MODEL_FIELDS, *TRAINING_INPUTS, "seed")  # what a task or size preset fills in
CUSTOM = "custom"
BASIC_INPUTS = ("max_steps", "batch_size", "lr")  # the rest are hidden in presenter view
TEXT_CHOICE, TASK_CHOICE = "A text", "A synthetic task"


@st.cache_data(max_entries=4, show_spinner="Counting tokens…")
def token_count(text: str, spec: str, _tokenizer) -> int:
    """Cached on the text and the tokenizer's spec (the tokenizer object itself is not hashed)."""
    return len(_tokenizer.encode(text))


def form_preset() -> dict:
    """What the chosen task or size sets (the first size's for custom sizes): the inputs' defaults,
    so a link lists only the settings changed from them, and reopens with exactly these."""
    state = st.session_state
    if state.get("train_what") == TASK_CHOICE:
        return preset_options(TASK_PREFIX + state.get("train_task", next(iter(TASKS))))
    size = state.get("train_preset")
    return preset_options(size=size if size in PRESETS else next(iter(PRESETS)))


def apply_preset() -> None:
    """The chosen task's own settings, or the chosen size's (leaving the inputs alone for custom sizes)."""
    state = st.session_state
    rewrite_inputs()  # the defaults follow the choice: an input it leaves alone may be off its default now
    if state.get("train_what") != TASK_CHOICE:
        state.setdefault("train_preset", next(iter(PRESETS)))
        if state["train_preset"] not in PRESETS:
            return
    preset = form_preset()
    for name in PRESET_INPUTS:
        if name in preset:  # a task's seed is the one its preset was timed with
            state[f"train_{name}"] = preset[name]


def sizes_changed() -> None:
    st.session_state["train_preset"] = CUSTOM
    rewrite_inputs()


def rewrite_inputs() -> None:
    """Write the inputs' values again when their defaults move under them (custom sizes default
    to the first size's numbers): Streamlit puts a bound widget's value into the address only
    when it is written, so a size left from "small" would be missing from the link."""
    state = st.session_state
    for key in (f"train_{name}" for name in PRESET_INPUTS):
        if key in state:
            state[key] = state[key]


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
            st.error(plain(f"{name} cannot be used: {exc}"))
            return None
        return str(saved[name].resolve()), tokenizer.vocab_size, tokenizer
    try:
        tokenizer = load_tiktoken(GPT2)
    except TokenizerError as exc:
        st.error(plain(exc))
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
        st.radio(
            "Size", [*PRESETS, CUSTOM], key="train_preset", bind=BIND, horizontal=True, on_change=apply_preset,
            captions=[p.description for p in PRESETS.values()] + ["your own sizes: change any number below"],
        )
    else:
        st.caption("Set for this task: it learns in about two minutes on a laptop CPU. Change any number below.")
    if "train_n_layer" not in st.session_state:  # after the radio: a size or task from a link is the one applied
        apply_preset()
    defaults = form_preset()
    for column, (name, label) in zip(st.columns(len(MODEL_FIELDS)), MODEL_FIELDS.items()):
        column.number_input(
            label, min_value=1, max_value=65_536, value=defaults[name], step=1, key=f"train_{name}", bind=BIND,
            help=HELP[name], on_change=sizes_changed,
        )


def training_inputs() -> None:
    inputs, defaults = list(TRAINING_INPUTS.items()), form_preset()
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
    device_inputs(device_column, processes_column, threads)


def device_inputs(device_column, processes_column, threads_column) -> None:
    """Where it trains: the device, how many processes, how many CPU threads each."""
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
    with threads_column, control("train_threads", advanced=True):
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


def chosen_settings(data: str, tokenizer: str | None = None) -> dict:
    """The TrainConfig fields the form sets, read from its session keys (a task's tokenizer is its own)."""
    state = st.session_state
    chosen = {name: state[f"train_{name}"] for name in (*PRESET_INPUTS, "device", "threads")}
    chosen |= {"min_lr": chosen["lr"] / 10, "data": data} | architecture_settings()
    return chosen if tokenizer is None else chosen | {"tokenizer": tokenizer}


def run_form() -> tuple[RunChoice, str] | None:
    """Draw the form. The run chosen and a base for its name; None while the text or the tokenizer is missing."""
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
    st.subheader("The architecture")
    architecture_section(task_tokenizer().vocab_size if learn == TASK_CHOICE else tokenizer and tokenizer[1])
    st.subheader("Training")
    training_inputs()
    processes = st.session_state["train_processes"]
    if learn == TASK_CHOICE:
        return RunChoice(chosen_settings(TASK_PREFIX + task.name), processes=processes), task.name
    if corpus is None or tokenizer is None:
        return None
    (text, _), (spec, vocab_size, tokenizer_object) = corpus, tokenizer
    source, size = st.session_state["train_source"], st.session_state["train_preset"]
    registered = next((c for c in CORPORA.values() if c.title == source), None)
    corpus_name = registered.name if registered else "upload" if source.startswith("Upload") else "pasted"
    tokens = len(text.encode("utf-8")) if tokenizer_object is None else token_count(text, spec, tokenizer_object)
    choice = RunChoice(
        chosen_settings(registered.name if registered else DATA_FILE, spec), vocab_size, size=size,
        text=None if registered else text, tokens=tokens, tokens_bound=tokenizer_object is None, processes=processes,
    )
    return choice, f"{size}-{corpus_name}"
