"""The MLP of each block: widen, an activation, narrow again. GPT-2's is GELU between two
matrices; a gated MLP (SwiGLU in Llama, GeGLU in Gemma) makes two widened vectors, side by
side in one c_fc, and multiplies the activation of one (the gate) by the other."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lm.attention import Linear, Probe
from lm.config import GPTConfig
from lm.gelu import gelu_tanh


def gated(activation: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """h = [gate, up] side by side -> activation(gate) × up."""
    def gate_times_up(h: torch.Tensor) -> torch.Tensor:
        gate, up = h.chunk(2, dim=-1)
        if torch.is_grad_enabled():  # autograd keeps activation(gate) for the backward pass
            return activation(gate) * up
        return activation(gate).mul_(up)  # outside it, into the activation's own fresh tensor
    return gate_times_up


ACTIVATIONS = {
    "gelu": gelu_tanh,  # F.gelu(h, approximate="tanh"), faster on a CPU (lm.gelu)
    "gelu_exact": F.gelu,
    "relu2": lambda h: F.relu(h).square(),
    "swiglu": gated(F.silu),
    "geglu": gated(gelu_tanh),  # Gemma's gelu_pytorch_tanh
}


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        gates = 2 if config.gated_mlp else 1
        self.c_fc = Linear(config.n_embd, gates * config.mlp_width, bias=config.bias)
        self.c_proj = Linear(config.mlp_width, config.n_embd, bias=config.bias)
        self.activation = ACTIVATIONS[config.mlp]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, probe: Probe | None = None) -> torch.Tensor:  # probe: for lm.moe's MoE
        return self.dropout(self.c_proj(self.activation(self.c_fc(x))))
