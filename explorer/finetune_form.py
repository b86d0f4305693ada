"""The Fine-tune page's form: the model to start from (the demo, a run, an imported GPT-2: every
checkpoint the pages find), the method, its data, LoRA and the training settings. Each input
lives in an `ft_*` session key bound to the URL, so a link or a lesson sets the form up;
`finetune_form` reads them into a FinetuneChoice."""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from explorer.finetune_data import DataChoice, chosen_data, data_input, describe
from explorer.finetune_runs import LORA_TARGETS, METHODS, FinetuneRequest
from explorer.finetune_template import template_section
from explorer.models import ModelEntry, find_models
from explorer.paths import FileStamp
from explorer.plain_text import plain
from explorer.presenter import control
from explorer.url_state import BIND
from lm.finetune.config import FinetuneConfig, defaults
from lm.finetune.lora import check_targets
from lm.checkpoint import CONFIG_FILE, TOKENIZER_FILE, CheckpointError, read_config
from lm.model import GPTConfig
from lm.tokenizer import TokenizerError, load_tokenizer

DEFAULTS = FinetuneConfig()  # the settings lm finetune starts from, besides each method's and data's own (defaults)
ALL = "all"
APPLIED = "finetune_defaults_applied"  # the training defaults last written into the form
TRAINING_INPUTS = {  # field: (label, min, max, step, help)
    "max_steps": ("Steps", 1, 100_000, 50, "optimizer steps to train for"),
    "lr": ("Learning rate", 1e-7, 1.0, 1e-4, "lower than pretraining's: the model knows much already, a big step undoes it"),
    "batch_size": ("Batch (examples)", 1, 1024, 1, "examples per optimizer step"),
    "eval_interval": ("Evaluate every (steps)", 1, 100_000, 5, "steps between validation measurements and checkpoints"),
}


@dataclass(frozen=True)
class FinetuneChoice:
    request: FinetuneRequest
    model: GPTConfig  # the starting model's
    tokenizer: object
    data: DataChoice
    name_base: str
    estimates: object = field(default=None, compare=False)  # where its costs are drawn: beside the data, on the first screen


@st.cache_resource(show_spinner=False, max_entries=16)
def _model_parts(folder: str, stamp: FileStamp) -> tuple[GPTConfig, object]:
    """The starting model's config and tokenizer, without its weights: all the form needs."""
    config, _ = read_config(folder)
    return config, load_tokenizer(f"{folder}/{TOKENIZER_FILE}")


def method_defaults(method: str, data: str | None = None) -> dict:
    """The training inputs' values for `method` on `data`: lm finetune's own defaults."""
    own = defaults(method, data)
    return {name: own.get(name, getattr(DEFAULTS, name)) for name in TRAINING_INPUTS}


def apply_defaults() -> None:
    """The chosen method's settings for the chosen data (a new method or data, or the first draw of the form).
    Only a setting whose default differs from the one applied last changes: a value the user typed
    survives a switch that does not concern it."""
    by_title = {title: name for name, (title, _) in METHODS.items()}
    method = by_title.get(st.session_state.get("ft_method"), "classify")
    applied = st.session_state.get(APPLIED, {})
    new = method_defaults(method, chosen_data(method))
    for name, value in new.items():
        if f"ft_{name}" not in st.session_state or applied.get(name) != value:
            st.session_state[f"ft_{name}"] = value
    st.session_state[APPLIED] = new


def source_input() -> tuple[ModelEntry, GPTConfig, object] | None:
    """The checkpoint to start from; `?model=NAME` (a link from a run) chooses it."""
    models = find_models()
    if not models:
        st.info("No model to start from yet: train one on the Train page, or import GPT-2 there.")
        return None
    by_name = {m.name: m for m in models}
    linked = st.query_params.get("model")
    index = list(by_name).index(linked) if linked in by_name else 0
    name = st.selectbox("Start from", list(by_name), index=index, key="ft_from", bind=BIND,
                        help="Any model the pages find: the demo, your runs, an imported GPT-2, a model fine-tuned before.")
    entry = by_name[name]
    try:
        config, tokenizer = _model_parts(str(entry.path), FileStamp.of(entry.path / CONFIG_FILE))
    except (CheckpointError, TokenizerError, OSError) as exc:
        st.error(plain(f"{name} cannot be fine-tuned: {exc}"))
        return None
    st.caption(f"{config.n_layer} layers × {config.n_embd} wide, context {config.block_size}, "
               f"{tokenizer.vocab_size:,}-token vocabulary.")
    return entry, config, tokenizer


def method_input() -> str:
    """The method, chosen by its title (which a link names, ?ft_method=Classify); lm's name returned."""
    by_title = {title: name for name, (title, _) in METHODS.items()}
    title = st.radio("Method", list(by_title), key="ft_method", bind=BIND, on_change=apply_defaults, horizontal=True,
                     index=list(by_title.values()).index("classify"))
    if "ft_max_steps" not in st.session_state:  # after the radio: a method from a link is the one applied
        apply_defaults()
    st.caption(f"{title}: {METHODS[by_title[title]][1]}.")
    return by_title[title]


def lora_inputs() -> dict:
    """LoRA's switch and settings, as FinetuneRequest fields (rank 0: off)."""
    on = st.toggle("LoRA: train small adapters, freeze the rest", key="ft_lora", bind=BIND,
                   help="Each chosen weight matrix W learns only a low-rank change A·B (rank × (in + out) numbers "
                        "instead of in × out): far fewer parameters train, and the saved model is an ordinary one.")
    if not on:
        return {"lora_rank": 0}
    rank, alpha, targets = st.columns(3)
    with rank, control("ft_lora_rank"):
        r = st.number_input("Rank", 1, 256, 8, 1, key="ft_lora_rank", bind=BIND, help="columns of A, rows of B")
    with alpha, control("ft_lora_alpha"):
        a = st.number_input("Alpha", 0.5, 1024.0, 16.0, 1.0, key="ft_lora_alpha", bind=BIND, format="%g",
                            help="the update is scaled by alpha / rank")
    with targets, control("ft_lora_targets"):
        chosen = st.multiselect("Matrices", list(LORA_TARGETS), default=list(check_targets(DEFAULTS.lora_targets)),
                                format_func=LORA_TARGETS.get,
                                key="ft_lora_targets", bind=BIND)
    with control("ft_lora_save", advanced=True):
        save = st.radio("Save", ["merge", "adapter"], index=["merge", "adapter"].index(DEFAULTS.lora_save), horizontal=True,
                        key="ft_lora_save", bind=BIND,
                        format_func={"merge": "merged into the weights (an ordinary model)",
                                     "adapter": "the adapter apart (a small file beside the base)"}.get)
    if not chosen:
        st.warning("Choose at least one kind of matrix for LoRA to adapt.")
    return {"lora_rank": int(r), "lora_alpha": float(a), "lora_targets": tuple(chosen), "lora_save": save}


def training_inputs(method: str, config: GPTConfig, lora: bool) -> dict:
    """Steps, learning rate, batch, evaluation interval, what trains (without LoRA), and DPO's beta."""
    values = {}
    for column, (name, (label, low, high, step, help_text)) in zip(st.columns(4), TRAINING_INPUTS.items()):
        with column, control(f"ft_{name}", advanced=name == "eval_interval"):
            values[name] = st.number_input(label, low, high, step=step, key=f"ft_{name}", bind=BIND, help=help_text,
                                           format="%g" if isinstance(step, float) else None)
    extra = st.columns(4)
    with extra[0], control("ft_seed", advanced=True):
        values["seed"] = st.number_input("Seed", 0, 2**31 - 1, DEFAULTS.seed, key="ft_seed", bind=BIND,
                                         help="seeds the split, the new head and the batches")
    if not lora:
        with extra[1], control("ft_trainable_blocks"):
            blocks = st.selectbox(
                f"Blocks that train (of {config.n_layer})", [ALL, *range(config.n_layer, -1, -1)], key="ft_trainable_blocks",
                bind=BIND, help="All: every weight learns. N: only the last N blocks, the final norm and a new head "
                "learn; the rest stay as pretrained (faster, and less to forget).")
            values["trainable_blocks"] = None if blocks == ALL else int(blocks)
    if method == "dpo":
        with extra[2], control("ft_beta"):
            values["beta"] = st.number_input("Beta", 0.01, 10.0, DEFAULTS.beta, 0.05, key="ft_beta", bind=BIND, format="%g",
                                             help="how far from the starting model the preferences may pull: higher, less far")
    return values


def finetune_form() -> FinetuneChoice | None:
    """Draw the form; the fine-tune it chooses, or None while the model or the data is missing."""
    left, right = st.columns(2, gap="large")
    with left:
        source = source_input()
        method = method_input()
    with right:
        estimates = st.container()  # filled once the settings below are read: first, so a projector's first screen shows it
        data = data_input(method, on_change=apply_defaults)
        if data is not None and data.examples:
            st.caption(describe(data, method))
    if source is None:
        return None
    entry, config, tokenizer = source
    if method in ("instruct", "dpo") and data is not None and data.examples:
        with st.container(border=True):
            template_section(tokenizer, data.examples[0], config.block_size)
    st.subheader("Training")
    lora = lora_inputs()
    settings = training_inputs(method, config, bool(lora["lora_rank"]))
    if data is None or (lora["lora_rank"] and not lora["lora_targets"]):
        return None
    request = FinetuneRequest(method=method, source=str(entry.path.resolve()), data=data.data, upload=data.upload,
                              **settings, **lora)
    return FinetuneChoice(request, config, tokenizer, data, f"{entry.name}-{method}", estimates)
