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
    """Parameters by part (the tied head adds none)."""
    C, L, b = config.n_embd, config.n_layer, int(config.bias)
    norm = C * (1 + b)
    return {
        "token embedding (shared with the head)": config.vocab_size * C,
        "position embedding": config.block_size * C,
        "attention": L * (C * 3 * C + 3 * C * b + C * C + C * b),
        "MLP": L * (C * 4 * C + 4 * C * b + 4 * C * C + C * b),
        "layer norms": (2 * L + 1) * norm,
    }


def parameter_count(config: GPTConfig) -> int:
    return sum(parameter_breakdown(config).values())


def flops_per_token(config: GPTConfig, training: bool = True) -> float:
    """Matmul FLOPs per token at full context: 2 per weight (multiply-add), plus
    attention's QKᵀ and weights·V; a backward pass costs twice the forward."""
    non_embedding = parameter_count(config) - config.block_size * config.n_embd
    forward = 2 * non_embedding + 4 * config.n_layer * config.block_size * config.n_embd
    return 3 * forward if training else forward


def activation_bytes(config: GPTConfig, batch_size: int = 1) -> int:
    """A rough fp32 figure for one batch's activations kept for the backward pass."""
    T, C, L, H = config.block_size, config.n_embd, config.n_layer, config.n_head
    return 4 * batch_size * T * (L * (16 * C + 2 * H * T) + 2 * config.vocab_size)


def training_memory_bytes(config: GPTConfig, batch_size: int = 1) -> int:
    """fp32 weights + gradients + two AdamW moments (16 bytes a parameter) + activations."""
    return 16 * parameter_count(config) + activation_bytes(config, batch_size)


def inference_memory_bytes(config: GPTConfig) -> int:
    """fp32 weights + what one full-context sequence needs to run: the KV cache and the logits."""
    T, C, L = config.block_size, config.n_embd, config.n_layer
    return 4 * parameter_count(config) + 4 * T * (2 * L * C + config.vocab_size)


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
