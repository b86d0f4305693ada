"""GPT-2's GELU, the tanh approximation, computed faster on a CPU.

GPT-2 defines GELU(x) = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). Since ½·(1 + tanh z)
= sigmoid(2z), the same function is x·sigmoid(x·(a + b·x²)) with a = 2√(2/π), b = 0.044715·a:
equal in exact arithmetic, and within fp32 rounding in practice (tests/test_gelu.py). PyTorch's
CPU tanh is slow (about 2 ms for a million floats on one thread, against 0.2 ms for sigmoid),
so `F.gelu(approximate="tanh")` costs five times the exact GELU; this form, with its gradient
written out by hand, takes a training step's GELU forward and backward about 1.7x faster
(benchmarks/train.py --profile shows it). Low-precision inputs (bf16 under autocast) are
computed in fp32 and rounded once, as PyTorch's own kernel does; fp64 stays fp64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

A = 2 * math.sqrt(2 / math.pi)
B = 0.044715 * A


def _gelu_tanh_forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GELU(x), and the gate sigmoid(x·(a + b·x²)) it multiplies x by."""
    x32 = x.to(torch.promote_types(x.dtype, torch.float32))
    gate = torch.addcmul(x32.new_tensor(A), x32, x32, value=B).mul_(x32).sigmoid_()
    return (x32 * gate).to(x.dtype), gate


class _GeluTanh(torch.autograd.Function):
    """Keeps x and the gate sigmoid(x·(a + b·x²)) for the backward pass, which needs both:
    d/dx [x·s] = s + x·s·(1 − s)·(a + 3b·x²) = s·(1 + t − t·s) with t = x·(a + 3b·x²)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y, gate = _gelu_tanh_forward(x)
        ctx.save_for_backward(x, gate)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, gate = ctx.saved_tensors
        x32 = x.to(gate.dtype)
        t = torch.addcmul(x32.new_tensor(A), x32, x32, value=3 * B).mul_(x32)
        return torch.addcmul(t, t, gate, value=-1).add_(1).mul_(gate).mul_(grad).to(grad.dtype)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU (F.gelu(x, approximate="tanh") within float rounding), with its gradient.
    Elsewhere than on a CPU PyTorch's own fused kernel is faster, and is used."""
    if x.device.type != "cpu":
        return F.gelu(x, approximate="tanh")
    if x.requires_grad and torch.is_grad_enabled():
        return _GeluTanh.apply(x)
    return _gelu_tanh_forward(x)[0]  # no gradient wanted: skip the autograd.Function's overhead (tens of µs)
