"""The Train page's Architecture section: a preset (GPT-2, Llama-, Qwen3-, Pythia-, Gemma3-style) or
the switches one by one, each with a line on why, and what the choice costs (parameters,
memory to run, the KV cache) updated as the switches move. Each switch lives in a `train_*`
session key bound to the URL, as the form's other inputs."""

from __future__ import annotations

import streamlit as st

from explorer.architecture_text import CHOICES, attention_kind, kv_sharing, why
from explorer.plain_text import plain
from explorer.presenter import control
from explorer.training_view import format_bytes
from explorer.url_state import BIND
from lm.architectures import (
    ARCH_FIELDS, ARCHITECTURES, GPT2_OPTIONS, matching_architecture, model_switches, swiglu_width,
)
from lm.config import GATED_MLPS, ConfigError, GPTConfig
from lm.sizing import active_parameter_count, inference_memory_bytes, kv_cache_bytes, parameter_count
from lm.train_config import TrainConfig, padded_vocab_size

ARCH_KEY, CUSTOM = "train_arch", "custom"
HELP = {name: TrainConfig.__dataclass_fields__[name].metadata["help"] for name in ARCH_FIELDS}
LABELS = {"position": "Position", "norm": "Norm", "norm_position": "Norm placement", "mlp": "MLP"}


def _n_head() -> int:
    return int(st.session_state.get("train_n_head", 1))


def architecture_settings() -> dict:
    """The TrainConfig fields the section sets (GPT-2's for switches not drawn yet); the
    windowed layers, a list in the form, are "0,2" in TrainConfig."""
    settings = {name: st.session_state.get(f"train_{name}", GPT2_OPTIONS[name]) for name in ARCH_FIELDS}
    return settings | {"window_layers": ",".join(map(str, settings["window_layers"] or []))}


def apply_architecture() -> None:
    name = st.session_state.get(ARCH_KEY)
    if name in ARCHITECTURES:
        for field, value in ARCHITECTURES[name].settings(_n_head()).items():
            st.session_state[f"train_{field}"] = [] if field == "window_layers" else value


def switches_changed() -> None:
    st.session_state[ARCH_KEY] = matching_architecture(architecture_settings(), _n_head()) or CUSTOM


def _choice(column, name: str) -> None:
    with column:
        value = st.radio(LABELS[name], list(CHOICES[name]), key=f"train_{name}", bind=BIND, horizontal=True,
                         on_change=switches_changed, help=HELP[name])
        st.caption(why(name, value))


def _toggle(column, name: str, label: str, advanced: bool = False) -> None:
    with column, control(f"train_{name}", advanced=advanced):
        value = st.toggle(label, value=GPT2_OPTIONS[name], key=f"train_{name}", bind=BIND, on_change=switches_changed,
                          help=HELP[name])
        st.caption(why(name, value))


def _number(name: str, label: str, low, high, step, advanced: bool = True, **extra):
    default = min(max(GPT2_OPTIONS[name], low), high)  # a bound set by another input (1 expert, top-k 2)
    with control(f"train_{name}", advanced=advanced):
        return st.number_input(label, min_value=low, max_value=high, value=default, step=step,
                               key=f"train_{name}", bind=BIND, on_change=switches_changed, help=HELP[name], **extra)


def kv_head_input(column) -> None:
    """Key/value heads: one of n_head's divisors (MHA, GQA, MQA), so every choice is valid."""
    n_head = _n_head()
    options = [0] + [d for d in range(n_head - 1, 0, -1) if n_head % d == 0]  # 0: n_head, one per query head
    if st.session_state.get("train_n_kv_head", 0) not in options:  # n_head changed under it
        st.session_state["train_n_kv_head"] = 0
    with column:
        chosen = st.selectbox("Key/value heads", options, key="train_n_kv_head", bind=BIND,
                              on_change=switches_changed, help=HELP["n_kv_head"],
                              format_func=lambda d: f"{n_head} ({attention_kind(n_head, d or n_head)})" if not d
                              else f"{d} ({attention_kind(n_head, d)})")
        st.caption(kv_sharing(n_head, chosen or n_head))


def window_layers_input() -> None:
    """Which layers use the window (Gemma 3 mixes local and global layers): chosen from the
    model's layers, so every choice is valid."""
    layers = list(range(int(st.session_state.get("train_n_layer", 1))))
    chosen = st.session_state.get("train_window_layers") or []
    if any(layer not in layers for layer in chosen):  # n_layer shrank under it
        st.session_state["train_window_layers"] = [layer for layer in chosen if layer in layers]
    with control("train_window_layers", advanced=True):
        st.multiselect("Windowed layers (none chosen: all)", layers, key="train_window_layers", bind=BIND,
                       on_change=switches_changed, help=HELP["window_layers"])


def mlp_width_note() -> str:
    """The width the MLP gets, and why that one."""
    state, n_embd = st.session_state, int(st.session_state.get("train_n_embd", 1))
    if state.get("train_mlp_hidden"):
        return f"{state['train_mlp_hidden']:,} units, as set"
    if state.get("train_mlp") in GATED_MLPS:
        return f"{swiglu_width(n_embd):,} units: 8/3 × {n_embd:,}, so three matrices hold what GPT-2's two do"
    return f"{4 * n_embd:,} units: 4 × {n_embd:,}, as GPT-2"


def switch_inputs() -> None:
    position, norm, mlp = st.columns(3)
    _choice(position, "position")
    with position:
        if st.session_state.get("train_position") == "rope":
            _number("rope_base", "RoPE base", 1.0, 1e9, 1000.0, format="%g")
            _number("rotary_fraction", "Rotary share of each head", 0.05, 1.0, 0.25, format="%g")
            if st.session_state.get("train_window"):
                _number("rope_local_base", "RoPE base in windowed layers (0: the same)", 0.0, 1e9, 1000.0, format="%g")
    _choice(norm, "norm")
    _choice(norm, "norm_position")
    _toggle(norm, "qk_norm", "QK-norm")
    _choice(mlp, "mlp")
    with mlp:
        _number("mlp_hidden", "MLP width (0: automatic)", 0, 1_000_000, 8)
        st.caption(mlp_width_note())
    heads, window, residual = st.columns(3)
    kv_head_input(heads)
    with window:
        size = _number("window", "Sliding window (0: off)", 0, 1_000_000, 1, advanced=False)
        st.caption(why("window", size))
        if size:
            window_layers_input()
    _toggle(residual, "parallel_residual", "Parallel attention and MLP")
    _toggle(residual, "tied_head", "Tied output head")
    _toggle(residual, "scale_embeddings", "Embeddings × √width", advanced=True)
    _toggle(residual, "bias", "Biases", advanced=True)
    experts_inputs()


def experts_inputs() -> None:
    """A mixture of experts: how many MLPs a layer, how many each token goes through (at most
    all of them, so every choice is valid), and the load-balancing loss's weight."""
    count, top_k, weight = st.columns(3)
    with count:
        n_experts = _number("n_experts", "Experts a layer (0: dense)", 0, 256, 1, advanced=False)
        st.caption(why("n_experts", n_experts))
    if not n_experts:
        return
    if st.session_state.get("train_experts_top_k", 1) > n_experts:  # fewer experts than before
        st.session_state["train_experts_top_k"] = n_experts
    with top_k:
        chosen = _number("experts_top_k", "Experts per token", 1, int(n_experts), 1, advanced=False)
        st.caption(f"each token goes through {chosen} of the {n_experts}, mixed by the router's weights: "
                   f"the work of {chosen} MLPs")
    with weight:
        _number("moe_aux_weight", "Load-balancing loss weight", 0.0, 1.0, 0.005, format="%g")
        st.caption("added to the loss so the router spreads tokens over all the experts, not a favourite few")


def chosen_model(vocab_size: int) -> GPTConfig:
    """The model the form's sizes and switches make (raises ValueError for a mix that cannot work)."""
    state = st.session_state
    sizes = {name: int(state[f"train_{name}"]) for name in ("block_size", "n_layer", "n_head", "n_embd")}
    switches = model_switches(architecture_settings(), sizes["n_embd"], sizes["n_layer"])
    return GPTConfig(vocab_size=padded_vocab_size(vocab_size), **sizes, **switches).validate(training=False)


def cost_metrics(vocab_size: int) -> None:
    """Parameters, memory to run and the KV cache, against the same sizes with GPT-2's attention."""
    try:
        model = chosen_model(vocab_size)
    except (ValueError, ConfigError) as exc:
        st.warning(plain(f"This mix cannot build a model: {exc}"), icon="⚠️")
        return
    mha = GPTConfig(**{**model.to_dict(), "n_kv_head": None, "window": None, "window_layers": None})
    params, memory, cache = st.columns(3)
    total, active = parameter_count(model), active_parameter_count(model)
    sparse = active != total  # a mixture of experts
    params.metric("Parameters", f"{total:,}", delta_color="off", delta_arrow="off",
                  delta=f"{active:,} active per token" if sparse else None,
                  help="A mixture of experts holds every expert, but each token goes through only some of them"
                  if sparse else None)
    memory.metric("Memory to run", format_bytes(inference_memory_bytes(model)),
                  help="fp32 weights, plus the KV cache and the logits of one full-context sequence")
    kv, full = kv_cache_bytes(model), kv_cache_bytes(mha)
    change = None if kv == full else f"{kv / full - 1:.0%} vs MHA"
    cache.metric(f"KV cache ({model.block_size:,} tokens)", format_bytes(kv), delta=change, delta_color="inverse",
                 help="a key and a value per layer, position and key/value head, in fp32: what generation keeps")


def architecture_section(vocab_size: int | None) -> None:
    """Draw the section; the costs need the tokenizer's vocabulary (None: not chosen yet)."""
    chosen = st.radio("Architecture", [*ARCHITECTURES, CUSTOM], key=ARCH_KEY, bind=BIND, horizontal=True,
                      on_change=apply_architecture)
    st.caption(ARCHITECTURES[chosen].description if chosen in ARCHITECTURES else "your own mix of the switches below")
    if "train_position" not in st.session_state or chosen in ARCHITECTURES:
        apply_architecture()  # a preset from a link, or n_head changed: its key/value heads follow
    switch_inputs()
    if vocab_size is not None:
        cost_metrics(vocab_size)
