"""What a GPT of a given config costs: parameters by part, FLOPs per token, and the
memory to train or run it, all counted from the config alone (no model is built), for
the Model view, the Train page's estimates, and refusing configs that cannot fit."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lm.model import GPTConfig

# What any config may cost, whatever the machine: a config.json comes from anywhere (an
# imported run), and building a model takes time for every layer even with no memory behind
# it (about 3 ms a layer on the meta device), so these are checked before anything is built.
# GPT-2 XL, the largest model the app imports, has 48 layers and 1.56 billion parameters.
MAX_LAYERS = 128
MAX_PARAMETERS = 2_000_000_000


def parameter_breakdown(config: GPTConfig) -> dict[str, int]:
    """Parameters by part, following the architecture dial (a tied head adds none)."""
    C, L, b, D = config.n_embd, config.n_layer, int(config.bias), config.head_dim
    q, kv = config.n_head * D, config.kv_heads * D
    norm = C * (1 + b) if config.norm == "layernorm" else C  # RMSNorm has no shift
    parts = {
        "token embedding" + (" (shared with the head)" if config.tied_head else ""): config.vocab_size * C,
        "output head": 0 if config.tied_head else config.vocab_size * C,
        "position embedding": config.block_size * C if config.position == "learned" else 0,
        "attention": L * (C * (q + 2 * kv) + (q + 2 * kv) * b + q * C + C * b + (2 * D if config.qk_norm else 0)),
        "MLP": L * max(1, config.n_experts) * mlp_parameters(config),  # a mixture of experts: one MLP each
        "router": L * C * config.n_experts,
        "layer norms": norm_count(config) * norm,
    }
    return {part: n for part, n in parts.items() if n}


def norm_count(config: GPTConfig) -> int:
    """Norms over the residual width: two a block (four with Gemma's sandwich), and a final one
    unless the blocks end normalized already (post-norm)."""
    per_block = 4 if config.norm_position == "sandwich" else 2
    return per_block * config.n_layer + (config.norm_position != "post")


def mlp_parameters(config: GPTConfig) -> int:
    """One MLP's parameters (one expert's, in a mixture of experts)."""
    C, F, b = config.n_embd, config.mlp_width, int(config.bias)
    gates = 2 if config.gated_mlp else 1
    return C * gates * F + gates * F * b + F * C + C * b


def parameter_count(config: GPTConfig) -> int:
    return sum(parameter_breakdown(config).values())


def active_parameter_count(config: GPTConfig) -> int:
    """The parameters one token's pass uses: all of them, except in a mixture of experts,
    where each token goes through experts_top_k of the n_experts MLPs (lm.moe)."""
    idle = config.n_experts - config.experts_top_k if config.n_experts else 0  # experts a token skips
    return parameter_count(config) - config.n_layer * idle * mlp_parameters(config)


def flops_per_token(config: GPTConfig, training: bool = True) -> float:
    """Matmul FLOPs per token at full context: 2 per weight it uses (multiply-add), plus
    attention's QKᵀ and weights·V; a backward pass costs twice the forward."""
    lookups = parameter_breakdown(config).get("position embedding", 0)  # an embedding read is no matmul
    lookups += 0 if config.tied_head else config.vocab_size * config.n_embd  # (a tied one is the head's matmul)
    seen = sum(min(config.block_size, config.windowed(layer) or config.block_size) for layer in range(config.n_layer))
    forward = 2 * (active_parameter_count(config) - lookups) + 4 * seen * config.n_head * config.head_dim
    return 3 * forward if training else forward


def activation_bytes(config: GPTConfig, batch_size: int = 1) -> int:
    """A rough fp32 figure for one batch's activations kept for the backward pass."""
    T, C, L, H = config.block_size, config.n_embd, config.n_layer, config.n_head
    return 4 * batch_size * T * (L * (16 * C + 2 * H * T) + 2 * config.vocab_size)


def training_memory_bytes(config: GPTConfig, batch_size: int = 1) -> int:
    """fp32 weights + gradients + two AdamW moments (16 bytes a parameter) + activations."""
    return 16 * parameter_count(config) + activation_bytes(config, batch_size)


def kv_cache_bytes(config: GPTConfig, batch_size: int = 1) -> int:
    """The fp32 KV cache for a full context: a key and a value per layer, position and
    key/value head. Fewer key/value heads (GQA, MQA) shrink it by n_head / n_kv_head."""
    return 4 * batch_size * 2 * config.n_layer * config.block_size * config.kv_heads * config.head_dim


def inference_memory_bytes(config: GPTConfig) -> int:
    """fp32 weights + what one full-context sequence needs to run: the KV cache and the logits."""
    return 4 * parameter_count(config) + kv_cache_bytes(config) + 4 * config.block_size * config.vocab_size


def physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def cost_problem(config: GPTConfig) -> str | None:
    """Why a config is beyond what this app builds on any machine (MAX_LAYERS, MAX_PARAMETERS), or None."""
    if config.n_layer > MAX_LAYERS:
        return f"n_layer is {config.n_layer:,}; this app builds at most {MAX_LAYERS} layers (GPT-2 XL has 48)"
    parameters = parameter_count(config)
    if parameters > MAX_PARAMETERS:
        return (f"this model would have {parameters / 1e9:,.1f} billion parameters; this app builds at most "
                f"{MAX_PARAMETERS / 1e9:.0f} billion (GPT-2 XL has 1.56): make n_layer, n_embd, block_size or vocab_size smaller")
    return None


def memory_problem(config: GPTConfig, memory_bytes: int | None = None, training: bool = True) -> str | None:
    """Why the model would not fit in `memory_bytes` (default: this machine's RAM) for
    training with AdamW or, with training=False, for running it; None when it fits."""
    needed = training_memory_bytes(config) if training else inference_memory_bytes(config)
    available = memory_bytes or physical_memory_bytes()
    if not available or needed <= available:
        return None
    purpose = "to train (weights, gradients and AdamW state)" if training else "to run"
    return (
        f"this model needs about {needed / 2**30:.1f} GiB {purpose} but the machine has "
        f"{available / 2**30:.1f} GiB; make n_layer, n_embd or vocab_size smaller"
    )
