"""The GPT: GPT-2's architecture, small enough to read in one sitting.

tokens -> token embedding + position embedding -> n_layer blocks of
(LayerNorm -> attention -> add) then (LayerNorm -> MLP -> add) -> LayerNorm ->
a linear head sharing the token embedding's weights -> logits for the next token.
The parameter names match OpenAI's GPT-2, so its weights load unchanged.
What a config costs (parameters, FLOPs, memory) is counted in lm.sizing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from lm.attention import AttentionSteps, CausalSelfAttention, Linear, Probe
from lm.sizing import cost_problem, memory_problem


SHAPING_FIELDS = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "bias")


class ConfigError(ValueError):
    """A config that cannot work; the message names the field and why."""


@dataclass
class GPTConfig:
    vocab_size: int = 50304
    block_size: int = 256  # context length: how many tokens the model sees at once
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms, as in GPT-2

    def validate(self, memory_bytes: int | None = None, training: bool = True) -> GPTConfig:
        """Raise ConfigError unless the config can build a model within the app's cost limit
        (lm.sizing.cost_problem) that fits in memory (lm.sizing.memory_problem: for training
        with AdamW or, with training=False, for running it)."""
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
        if problem := cost_problem(self) or memory_problem(self, memory_bytes, training):
            raise ConfigError(problem)
        return self

    @classmethod
    def from_dict(cls, data: dict) -> GPTConfig:
        """The config a checkpoint's config.json holds: every field that shapes the weights must
        be there (a default would build the wrong shapes and fail later, less clearly)."""
        if not isinstance(data, dict):
            raise ConfigError(f"the model config must be a JSON object, not {type(data).__name__}")
        missing = [name for name in SHAPING_FIELDS if name not in data]
        if missing:
            raise ConfigError(f"the model config has no {', '.join(missing)}")
        return from_known_fields(cls, data, "model config fields")

    def to_dict(self) -> dict:
        return asdict(self)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config.n_embd, config.n_head, config.dropout, config.bias, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, probe: Probe = Probe()) -> tuple[torch.Tensor, AttentionSteps | None]:
        attended, steps = self.attn(self.ln_1(x), probe)
        x = x + attended
        x = x + self.mlp(self.ln_2(x))
        return x, steps


@dataclass
class GPTOutput:
    logits: torch.Tensor  # [batch, T, vocab]
    loss: torch.Tensor | None = None
    attention: list[AttentionSteps] | None = None  # one per layer, when the probe asks to explain
    residuals: list[torch.Tensor] | None = None  # the residual stream after each block, [batch, T, n_embd]


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config.validate(training=False)
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(Block(config, layer) for layer in range(config.n_layer)),
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
        self, idx: torch.Tensor, probe: Probe = Probe()
    ) -> tuple[torch.Tensor, list[AttentionSteps] | None, list[torch.Tensor] | None]:
        """Everything before the head: the final LayerNorm's output [batch, T, n_embd] (the
        head turns each row into next-token logits); then, one per layer, the attention
        steps and the residual stream after the block, when the probe asks for them."""
        T = idx.size(1)
        start = len(probe.cache) if probe.cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"{start + T} positions exceed the context length of {self.config.block_size}")
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        attention = [] if probe.explain else None
        residuals = [] if probe.residuals else None
        for block in self.transformer.h:
            x, steps = block(x, probe)
            if attention is not None:
                attention.append(steps)
            if residuals is not None:
                residuals.append(x)
        return self.transformer.ln_f(x), attention, residuals

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, probe: Probe = Probe()) -> GPTOutput:
        """idx [batch, T] token ids; targets [batch, T] the next ids (-1: no target here).
        The probe continues from a KV cache, keeps intermediates or switches heads off."""
        x, attention, residuals = self.hidden(idx, probe)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return GPTOutput(logits, loss, attention, residuals)


def from_known_fields(cls, data: dict, what: str):
    """cls(**data) for a dataclass, naming any key it has no field for (a typo in a config
    file would otherwise end in a bare TypeError)."""
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ConfigError(f"unknown {what}: {', '.join(sorted(unknown))}")
    return cls(**data)
