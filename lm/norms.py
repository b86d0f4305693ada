"""The norms a block can use: LayerNorm (GPT-2) or RMSNorm (Llama, Qwen, Gemma).

Gemma stores its RMSNorm scale as w and multiplies by (1 + w), so that zero means "no
change"; that is the same computation as RMSNorm with a scale of 1 + w, which is what the
importer (lm.hf_architectures) stores here: no switch is needed for it."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lm.config import GPTConfig


class RMSNorm(nn.RMSNorm):
    """RMSNorm in fp32 whatever its input: under bf16 autocast, QK-norm's queries and keys and
    the sandwich norms' sublayer outputs arrive in bf16, where a mean of squares loses digits
    and torch's fused kernel refuses an fp32 weight."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # the common case, without two conversions that do nothing
            return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)
        return super().forward(x.float()).to(x.dtype)


def make_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)
