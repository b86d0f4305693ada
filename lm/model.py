"""The GPT: GPT-2's architecture, small enough to read in one sitting, with a dial.

tokens -> token embedding + position embedding -> n_layer blocks of
(LayerNorm -> attention -> add) then (LayerNorm -> MLP -> add) -> LayerNorm ->
a linear head sharing the token embedding's weights -> logits for the next token.
The parameter names match OpenAI's GPT-2, so its weights load unchanged.

GPTConfig's switches (lm.config) turn on what later models changed: rotary positions
instead of the position embedding (lm.rope), RMSNorm, post-norm or Gemma's sandwich norms
(lm.norms), QK-norm, a SwiGLU, GeGLU or ReLU² MLP (lm.mlp) or a mixture of such experts
(lm.moe), fewer key/value heads than query heads, a sliding window, a parallel residual,
scaled embeddings, an untied head.
What a config costs is counted in lm.sizing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from lm.attention import AttentionSteps, CausalSelfAttention, Linear, Probe
from lm.config import SHAPING_FIELDS, ConfigError, GPTConfig, from_known_fields  # noqa: F401 (their home was here)
from lm.mlp import MLP
from lm.moe import MoE, balance_loss
from lm.norms import make_norm


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = make_norm(config)
        self.mlp = MoE(config) if config.n_experts else MLP(config)  # lm.moe: experts and a router
        sandwich = config.norm_position == "sandwich"  # Gemma: each sublayer's output is normalized before it is added
        self.ln_attn_out = make_norm(config) if sandwich else nn.Identity()
        self.ln_mlp_out = make_norm(config) if sandwich else nn.Identity()
        self.post_norm, self.parallel = config.norm_position == "post", config.parallel_residual

    def forward(self, x: torch.Tensor, probe: Probe = Probe()) -> tuple[torch.Tensor, AttentionSteps | None]:
        if self.post_norm:  # the original Transformer: normalize after each addition
            attended, steps = self.attn(x, probe)
            x = self.ln_1(x + attended)
            return self.ln_2(x + self.mlp(x, probe)), steps
        attended, steps = self.attn(self.ln_1(x), probe)
        if self.parallel:  # both sublayers read the same x
            return x + attended + self.mlp(self.ln_2(x), probe), steps
        x = x + self.ln_attn_out(attended)
        return x + self.ln_mlp_out(self.mlp(self.ln_2(x), probe)), steps


@dataclass
class GPTOutput:
    logits: torch.Tensor  # [batch, T, vocab]
    loss: torch.Tensor | None = None
    attention: list[AttentionSteps] | None = None  # one per layer, when the probe asks to explain
    residuals: list[torch.Tensor] | None = None  # the residual stream after each block, [batch, T, n_embd]
    aux_loss: torch.Tensor | None = None  # mixture of experts, with targets: the load-balancing loss (lm.moe)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config.validate(training=False)
        parts = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))
        if config.position == "learned":
            parts["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        parts |= dict(
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config, layer) for layer in range(config.n_layer)),
            # post-norm blocks end normalized already: no final norm, so the logit lens reads them as they are
            ln_f=make_norm(config) if config.norm_position != "post" else nn.Identity(),
        )
        self.transformer = nn.ModuleDict(parts)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tied_head:
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

    def embed(self, idx: torch.Tensor, start: int = 0) -> torch.Tensor:
        """The residual stream before block 0 [batch, T, n_embd]: token embeddings (× √n_embd
        with scale_embeddings, as Gemma) plus, with learned positions, those of start, start + 1, ..."""
        x = self.transformer.wte(idx)
        if self.config.scale_embeddings:
            x = x * self.config.n_embd ** 0.5
        if "wpe" in self.transformer:  # rotary positions enter inside attention instead
            x = x + self.transformer.wpe(torch.arange(start, start + idx.size(1), device=idx.device))
        return x

    def hidden(
        self, idx: torch.Tensor, probe: Probe = Probe()
    ) -> tuple[torch.Tensor, list[AttentionSteps] | None, list[torch.Tensor] | None]:
        """Everything before the head: the final norm's output [batch, T, n_embd] (the
        head turns each row into next-token logits); then, one per layer, the attention
        steps and the residual stream after the block, when the probe asks for them."""
        T = idx.size(1)
        start = len(probe.cache) if probe.cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"{start + T} positions exceed the context length of {self.config.block_size}")
        x = self.transformer.drop(self.embed(idx, start))
        attention = [] if probe.explain and probe.keep_steps is None else None
        residuals = [] if probe.residuals else None
        for block in self.transformer.h:
            x, steps = block(x, probe)  # a probe's keep_steps is handed them by the attention layer itself
            if attention is not None:
                attention.append(steps)
            if residuals is not None:
                residuals.append(x)
        return self.transformer.ln_f(x), attention, residuals

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, probe: Probe = Probe()) -> GPTOutput:
        """idx [batch, T] token ids; targets [batch, T] the next ids (-1: no target here).
        The probe continues from a KV cache, keeps intermediates or switches heads off."""
        if targets is not None and self.config.n_experts and probe.routes is None:
            probe = replace(probe, routes=[])  # the routers' choices, for the load-balancing loss
        x, attention, residuals = self.hidden(idx, probe)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        aux_loss = balance_loss(probe.routes) if probe.routes else None
        return GPTOutput(logits, loss, attention, residuals, aux_loss)

