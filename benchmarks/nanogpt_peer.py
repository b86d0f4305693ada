"""The peer benchmarks/train.py measures against: a GPT computed the way nanoGPT's model.py
computes it (github.com/karpathy/nanoGPT), written here from its description since nanoGPT
is not a package: nn.Linear layers ([out, in] weights), nn.LayerNorm, the exact GELU
(nn.GELU()), F.scaled_dot_product_attention with is_causal=True, learned positions, a head
tied to the token embedding, the loss over all positions; and its optimizer on a CPU, AdamW
with two decay groups and no `fused` (nanoGPT asks for fused only on CUDA). It takes a copy
of an lm.GPT's weights, so both start from the same point."""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.c_attn, self.attn_proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)
        self.c_fc, self.mlp_proj = nn.Linear(n_embd, 4 * n_embd), nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.c_attn(self.ln_1(x)).split(C, 2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class NanoGPTPeer(nn.Module):
    def __init__(self, ours: nn.Module):
        super().__init__()
        c = ours.config
        self.wte, self.wpe = nn.Embedding(c.vocab_size, c.n_embd), nn.Embedding(c.block_size, c.n_embd)
        self.h = nn.ModuleList(Block(c.n_embd, c.n_head) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        self._copy(ours)

    @torch.no_grad()
    def _copy(self, ours: nn.Module) -> None:
        """Our weights: the same values, our [in, out] Linear weights transposed to nn.Linear's [out, in]."""
        t = ours.transformer
        self.wte.weight.copy_(t.wte.weight)
        self.wpe.weight.copy_(t.wpe.weight)
        pairs = [(self.ln_f, t.ln_f)]
        for mine, theirs in zip(self.h, t.h):
            pairs += [(mine.ln_1, theirs.ln_1), (mine.ln_2, theirs.ln_2), (mine.c_attn, theirs.attn.c_attn),
                      (mine.attn_proj, theirs.attn.c_proj), (mine.c_fc, theirs.mlp.c_fc), (mine.mlp_proj, theirs.mlp.c_proj)]
        for mine, theirs in pairs:
            transpose = isinstance(mine, nn.Linear)
            mine.weight.copy_(theirs.weight.t() if transpose else theirs.weight)
            mine.bias.copy_(theirs.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> SimpleNamespace:
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return SimpleNamespace(logits=logits, loss=F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1)))


def nanogpt_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)
