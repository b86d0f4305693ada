"""The GPT: GPT-2's architecture, small enough to read in one sitting.

tokens -> token embedding + position embedding -> n_layer blocks of
(LayerNorm -> attention -> add) then (LayerNorm -> MLP -> add) -> LayerNorm ->
a linear head sharing the token embedding's weights -> logits for the next token.
The parameter names match OpenAI's GPT-2, so its weights load unchanged.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from lm.attention import AttentionSteps, CausalSelfAttention, KVCache, Linear


class ConfigError(ValueError):
    """A model config that cannot work; the message names the field and why."""


@dataclass
class GPTConfig:
    vocab_size: int = 50304
    block_size: int = 256  # context length: how many tokens the model sees at once
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms, as in GPT-2

    def validate(self, memory_bytes: int | None = None, training: bool = True) -> "GPTConfig":
        """Raise ConfigError unless the config can build a model that fits in memory
        (`memory_bytes`, default: this machine's RAM), for training with AdamW or,
        with training=False, for running it."""
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive whole number, not {value!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): each head gets an equal "
                f"slice of the embedding; try n_embd = {self.n_head * max(1, round(self.n_embd / self.n_head))}"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be a number in [0, 1), not {self.dropout!r}")
        needed = training_memory_bytes(self) if training else inference_memory_bytes(self)
        available = memory_bytes or physical_memory_bytes()
        if available and needed > available:
            purpose = "to train (weights, gradients and AdamW state)" if training else "to run"
            raise ConfigError(
                f"this model needs about {needed / 2**30:.1f} GiB {purpose} but the machine has "
                f"{available / 2**30:.1f} GiB; make n_layer, n_embd or vocab_size smaller"
            )
        return self

    @classmethod
    def from_dict(cls, data: dict) -> "GPTConfig":
        return from_known_fields(cls, data, "model config fields")

    def to_dict(self) -> dict:
        return asdict(self)


def from_known_fields(cls, data: dict, what: str):
    """cls(**data) for a dataclass, naming any key it has no field for (a typo in a config
    file would otherwise end in a bare TypeError)."""
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ConfigError(f"unknown {what}: {', '.join(sorted(unknown))}")
    return cls(**data)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config.n_embd, config.n_head, config.dropout, config.bias)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, cache=None, layer=0, explain=False, head_mask=None):
        attended, steps = self.attn(self.ln_1(x), cache, layer, explain, head_mask)
        x = x + attended
        x = x + self.mlp(self.ln_2(x))
        return x, steps


@dataclass
class GPTOutput:
    logits: torch.Tensor  # [batch, T, vocab]
    loss: torch.Tensor | None = None
    attention: list[AttentionSteps] | None = None  # one per layer, when asked for


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config.validate(training=False)
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying: one matrix reads and writes tokens
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale the residual projections by depth
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (Linear, nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def hidden(
        self,
        idx: torch.Tensor,
        explain: bool = False,
        cache: KVCache | None = None,
        head_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[AttentionSteps] | None]:
        """Everything before the head: the final LayerNorm's output [batch, T, n_embd]
        (the head turns each row into next-token logits), and the attention steps
        when `explain` is set."""
        T = idx.size(1)
        start = len(cache) if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"{start + T} positions exceed the context length of {self.config.block_size}")
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        attention = [] if explain else None
        for layer, block in enumerate(self.transformer.h):
            x, steps = block(x, cache, layer, explain, None if head_mask is None else head_mask[layer])
            if explain:
                attention.append(steps)
        return self.transformer.ln_f(x), attention

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        explain: bool = False,
        cache: KVCache | None = None,
        head_mask: torch.Tensor | None = None,
    ) -> GPTOutput:
        """idx [batch, T] token ids. `explain` also returns every layer's attention
        steps (the weights are [batch, heads, T, T]); `cache` continues from the
        positions it holds; `head_mask` [n_layer, n_head] switches heads off."""
        x, attention = self.hidden(idx, explain, cache, head_mask)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return GPTOutput(logits, loss, attention)


# --- sizes, for the Model view and for refusing configs that cannot fit -------------


def parameter_breakdown(config: GPTConfig) -> dict[str, int]:
    """Parameters by part, counted from the config (the tied head adds none)."""
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
