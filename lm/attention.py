"""Causal multi-head self-attention, written out step by step.

Each token makes a query, a key and a value. A query is compared with the key of
every token at or before it (scores = QKᵀ/√d), later tokens are masked out, a
softmax turns each row of scores into weights that sum to 1, and the output is
the weighted sum of the values. Heads do this side by side on slices of the
embedding. Training takes PyTorch's fused kernel for the same computation;
`attention_steps` keeps every intermediate for the app to show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class AttentionSteps:
    """Every stage of one attention computation. q and output are [batch, heads, T_query,
    head_dim]; k and v [batch, heads, T_key, head_dim] (with a cache, every position so far);
    the rest [batch, heads, T_query, T_key]."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    scores: torch.Tensor  # QKᵀ/√d
    masked: torch.Tensor  # scores with future positions set to -inf
    weights: torch.Tensor  # softmax of each row
    output: torch.Tensor  # weights @ V


def causal_mask(t_query: int, t_key: int, device=None) -> torch.Tensor:
    """True where query i may look at key j. With a cache, the queries are the last
    t_query of t_key positions, so query i sits at position t_key - t_query + i."""
    return torch.ones(t_query, t_key, dtype=torch.bool, device=device).tril(diagonal=t_key - t_query)


def attention_steps(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: nn.Module | None = None) -> AttentionSteps:
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    masked = scores.masked_fill(~causal_mask(q.size(-2), k.size(-2), q.device), float("-inf"))
    weights = F.softmax(masked, dim=-1)
    output = (dropout(weights) if dropout is not None else weights) @ v
    return AttentionSteps(q, k, v, scores, masked, weights, output)


class KVCache:
    """The keys and values of every position seen so far, per layer, so each new
    token costs one query against them instead of recomputing the whole prefix.
    Each layer's buffer is allocated once for `capacity` positions (the context
    length) and filled in place: growing it token by token would copy it all every step."""

    def __init__(self, n_layer: int, capacity: int):
        self.capacity = capacity
        self.lengths = [0] * n_layer
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer

    def __len__(self) -> int:
        return self.lengths[0]

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v [batch, heads, new positions, head size]; return all positions so far."""
        start, end = self.lengths[layer], self.lengths[layer] + k.size(-2)
        if end > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} positions; {end} were asked for")
        if self.keys[layer] is None:
            B, H, _, D = k.shape
            self.keys[layer], self.values[layer] = k.new_empty(B, H, self.capacity, D), v.new_empty(B, H, self.capacity, D)
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        self.lengths[layer] = end
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


@dataclass(frozen=True, eq=False)
class Probe:
    """What a forward pass does besides computing the logits, handed down to every
    attention layer as one argument. The default asks for nothing, so training and
    generation take the fused kernel and keep nothing."""

    explain: bool = False  # take the step-by-step path and keep each layer's AttentionSteps
    residuals: bool = False  # keep the residual stream after each block
    head_mask: torch.Tensor | None = None  # [n_layer, n_head]: 1 keeps a head, 0 silences it
    cache: KVCache | None = None  # continue from the positions it holds, and add these


class Linear(nn.Module):
    """y = x·W + b with W stored [in, out]: the layout of OpenAI's GPT-2 checkpoints (their
    "Conv1D"), so those weights load as they are. On a CPU a one-token generation step also
    reads W about 10% faster in this order than in nn.Linear's [out, in]."""

    def __init__(self, n_in: int, n_out: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.size(-1))
        y = torch.addmm(self.bias, flat, self.weight) if self.bias is not None else flat @ self.weight
        return y.view(*x.shape[:-1], -1)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True, layer: int = 0):
        super().__init__()
        self.n_head = n_head
        self.layer = layer  # its place in the model: which cache slot and head-mask row are its own
        self.c_attn = Linear(n_embd, 3 * n_embd, bias=bias)  # query, key, value in one matmul
        self.c_proj = Linear(n_embd, n_embd, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)
        self.dropout = dropout

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, T, C] -> q, k, v each [B, heads, T, C // heads]."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        return tuple(t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))

    def forward(self, x: torch.Tensor, probe: Probe = Probe()) -> tuple[torch.Tensor, AttentionSteps | None]:
        """The layer's output, and its AttentionSteps when the probe asks to explain."""
        B, T, C = x.shape
        q, k, v = self.split_heads(x)
        if probe.cache is not None:
            k, v = probe.cache.extend(self.layer, k, v)
        steps = None
        if probe.explain:
            steps = attention_steps(q, k, v, self.attn_dropout if self.training else None)
            y = steps.output
        else:
            # Same computation, fused. is_causal assumes square masks, so a cached
            # single-token query (which may see every key) passes no mask at all.
            y = F.scaled_dot_product_attention(
                q, k, v,
                attn_mask=None if q.size(-2) in (1, k.size(-2)) else causal_mask(q.size(-2), k.size(-2), q.device),
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=q.size(-2) == k.size(-2) and q.size(-2) > 1,
            )
        if probe.head_mask is not None:  # ablation: a silenced head passes on zeros
            y = y * probe.head_mask[self.layer].view(1, -1, 1, 1).to(y)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y)), steps
