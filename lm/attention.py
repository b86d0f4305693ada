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
from functools import lru_cache
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lm.config import GPTConfig
from lm.device import attention_written_out
from lm.norms import RMSNorm
from lm.rope import rotate, rotation_at


@dataclass
class AttentionSteps:
    """Every stage of one attention computation. q and output are [batch, heads, T_query,
    head_dim]; k and v [batch, heads, T_key, head_dim] (with a cache, every position so far;
    with grouped key/value heads, each query head's copy of its group's); the rest
    [batch, heads, T_query, T_key]. With rotary positions, q and k are the rotated ones."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    scores: torch.Tensor  # QKᵀ/√d
    masked: torch.Tensor  # scores with future positions set to -inf
    weights: torch.Tensor  # softmax of each row
    output: torch.Tensor  # weights @ V


def causal_mask(t_query: int, t_key: int, device=None, window: int | None = None) -> torch.Tensor:
    """True where query i may look at key j. With a cache, the queries are the last
    t_query of t_key positions, so query i sits at position t_key - t_query + i. A sliding
    window also hides the keys `window` or more positions before the query: a band."""
    offset = t_key - t_query
    mask = torch.ones(t_query, t_key, dtype=torch.bool, device=device).tril(diagonal=offset)
    return mask.triu(diagonal=offset - window + 1) if window else mask


KEPT_MAX_NUMBERS = 1 << 20  # 4 MB in fp32: contexts up to 1,024 tokens


def hidden_as_minus_inf(t_query: int, t_key: int, dtype: torch.dtype, device, window: int | None) -> torch.Tensor:
    """[t_query, t_key]: 0 where causal_mask lets a query see a key, −inf where not. Outside
    autograd every layer of a pass adds the same one, so it is made once and kept (up to
    KEPT_MAX_NUMBERS of them: a long context's would hold memory for good)."""
    if torch.is_grad_enabled() or t_query * t_key > KEPT_MAX_NUMBERS:
        return _minus_inf_where_hidden(t_query, t_key, dtype, device, window)
    return _kept_minus_inf_where_hidden(t_query, t_key, dtype, device, window)


def _minus_inf_where_hidden(t_query: int, t_key: int, dtype: torch.dtype, device, window: int | None) -> torch.Tensor:
    visible = causal_mask(t_query, t_key, device, window)
    return torch.zeros(visible.shape, dtype=dtype, device=device).masked_fill_(~visible, float("-inf"))


_kept_minus_inf_where_hidden = lru_cache(maxsize=8)(_minus_inf_where_hidden)  # a pass's one or two (Gemma's windows)


def attention_steps(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: nn.Module | None = None, window: int | None = None,
    scale_size: int | None = None,
) -> AttentionSteps:
    """Scores are QKᵀ/√scale_size (by default the head size: GPT-2 and most models)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(scale_size or q.size(-1))
    # −inf added where hidden: one [T, T] broadcast over the heads (masked_fill on every head made
    # these steps 20% slower on a CPU)
    masked = scores + hidden_as_minus_inf(q.size(-2), k.size(-2), scores.dtype, q.device, window)
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
    routes: list | None = None  # each mixture-of-experts layer appends its router's choices here (lm.moe.Route)
    # with explain: handed (layer, its AttentionSteps) instead of the pass keeping every layer's, so a
    # caller that keeps a few parts holds no more memory than those (fresh pages cost a CPU more than the copy).
    # The attention layer hands them on as soon as it has them, so a caller that has all it needs may raise
    # and so skip the rest of the pass (lm.inspect.attention_pass: the last block's MLP, or the layers after one)
    keep_steps: Callable[[int, AttentionSteps], None] | None = None


class Linear(nn.Module):
    """y = x·W + b with W stored [in, out]: the layout of OpenAI's GPT-2 checkpoints (their
    "Conv1D"), so those weights load as they are. On a CPU a one-token generation step also
    reads W about 10% faster in this order than in nn.Linear's [out, in]."""

    COLUMN_BLOCK = 1536  # outputs per matmul of a wide W in a multi-token pass on one CPU thread
    TRANSPOSED_TOKENS = 256  # at most this many tokens take the transposed product on several CPU threads

    def __init__(self, n_in: int, n_out: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.size(-1))
        if flat.size(0) > 1 and self.cpu_inference(flat):
            threads = torch.get_num_threads()
            if threads > 1 and flat.size(0) <= self.TRANSPOSED_TOKENS:
                return self.transposed(flat).view(*x.shape[:-1], -1)
            if threads == 1 and self.weight.size(1) > self.COLUMN_BLOCK:
                return self.by_column_blocks(flat).view(*x.shape[:-1], -1)
        y = torch.addmm(self.bias, flat, self.weight) if self.bias is not None else flat @ self.weight
        return y.view(*x.shape[:-1], -1)

    @staticmethod
    def cpu_inference(flat: torch.Tensor) -> bool:
        """The other orders were measured on a CPU only, and autocast passes by a matmul given out=:
        under it blocks would multiply in fp32, or fail on a bf16 input (a training run's evaluation)."""
        return flat.device.type == "cpu" and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")

    def transposed(self, flat: torch.Tensor) -> torch.Tensor:
        """(Wᵀ·flatᵀ + b)ᵀ: flat·W + b's numbers, as a view whose tokens lie next to each other.
        Asked this way round, a CPU's matmul on several threads reads W faster, which pays while
        reading W is most of the work, on few tokens: at 2 threads a pass through SmolLM2-135M's
        shape took 0.86x the plain order's time on 128 tokens, 0.94x on 256, 1.0x on 512 and 1.05x
        on 1,024 (Qwen3-0.6B's: 0.84x, 0.90x, 0.94x); on one thread it is the slower order."""
        if self.bias is None:
            return torch.mm(self.weight.t(), flat.t()).t()
        return torch.addmm(self.bias.unsqueeze(1), self.weight.t(), flat.t()).t()

    def by_column_blocks(self, flat: torch.Tensor) -> torch.Tensor:
        """flat·W + b a block of columns at a time, each written into its place in y: the same
        numbers, but one CPU thread's matmul on many tokens reads a wide W [in, out] slower in one
        go (Qwen3-0.6B's c_fc, 1,024 x 6,144: about 5% slower than in blocks of 1,536 columns)."""
        y = flat.new_empty(flat.size(0), self.weight.size(1))
        for start in range(0, y.size(1), self.COLUMN_BLOCK):
            cols = slice(start, start + self.COLUMN_BLOCK)
            if self.bias is not None:
                torch.addmm(self.bias[cols], flat, self.weight[:, cols], out=y[:, cols])
            else:
                torch.mm(flat, self.weight[:, cols], out=y[:, cols])
        return y


class CausalSelfAttention(nn.Module):
    """Attention as the config sets it: n_kv_head key/value heads each shared by a group of
    query heads (GQA; MQA with one), optional QK-norm, rotary positions, a sliding window."""

    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_size = config.n_head, config.kv_heads, config.head_dim
        self.layer = layer  # its place in the model: which cache slot and head-mask row are its own
        self.window = config.windowed(layer)
        self.rotary_dims, self.rope_base = config.rotary_dims, config.rope_base_of(layer)
        self.scale_size = config.attn_scale_size  # None: the head size
        qkv = (self.n_head + 2 * self.n_kv_head) * self.head_size
        self.c_attn = Linear(config.n_embd, qkv, bias=config.bias)  # query, key, value in one matmul
        self.c_proj = Linear(self.n_head * self.head_size, config.n_embd, bias=config.bias)
        if config.qk_norm:  # per head, over its head_size dimensions, as Qwen3
            self.q_norm = RMSNorm(self.head_size, eps=config.norm_eps)
            self.k_norm = RMSNorm(self.head_size, eps=config.norm_eps)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout = config.dropout

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, T, C] -> q [B, n_head, T, head size]; k, v [B, n_kv_head, T, head size]."""
        B, T, _ = x.shape
        sizes = [self.n_head * self.head_size, self.n_kv_head * self.head_size, self.n_kv_head * self.head_size]
        return tuple(t.view(B, T, -1, self.head_size).transpose(1, 2) for t in self.c_attn(x).split(sizes, dim=2))

    def forward(self, x: torch.Tensor, probe: Probe = Probe()) -> tuple[torch.Tensor, AttentionSteps | None]:
        """The layer's output, and its AttentionSteps when the probe asks to explain."""
        B, T, _ = x.shape
        q, k, v = self.split_heads(x)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rotary_dims:
            start = probe.cache.lengths[self.layer] if probe.cache is not None else 0
            cos, sin = rotation_at(start, T, self.rotary_dims, self.rope_base, x.device)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if probe.cache is not None:
            k, v = probe.cache.extend(self.layer, k, v)
        steps = None
        if probe.explain or attention_written_out(q, k):  # each query head with the key/value head its group reads
            group = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
            steps = attention_steps(q, k, v, self.attn_dropout if self.training else None, self.window, self.scale_size)
            if probe.keep_steps is not None:
                probe.keep_steps(self.layer, steps)
            y = steps.output
        else:  # a CPU's fused kernel needs each head's rows contiguous, or takes its math path, several times slower
            q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))  # Linear's transposed products
            mask, is_causal = self.fused_mask(q.size(-2), k.size(-2), q.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                               dropout_p=self.dropout if self.training else 0.0,
                                               scale=self.scale_size ** -0.5 if self.scale_size else None,
                                               enable_gqa=self.n_kv_head != self.n_head)
        if probe.head_mask is not None:  # ablation: a silenced head passes on zeros
            y = y * probe.head_mask[self.layer].view(1, -1, 1, 1).to(y)
        y = y.transpose(1, 2).contiguous().view(B, T, -1)  # heads side by side again
        return self.resid_dropout(self.c_proj(y)), steps

    def fused_mask(self, t_query: int, t_key: int, device) -> tuple[torch.Tensor | None, bool]:
        """The mask for the fused kernel, and whether is_causal says it instead. is_causal
        assumes square masks, so a cached single-token query (which may see every key)
        passes no mask at all, unless a window hides some of them."""
        if self.window is not None and t_key > self.window:
            return causal_mask(t_query, t_key, device, self.window), False
        if t_query in (1, t_key):
            return None, t_query > 1
        return causal_mask(t_query, t_key, device), False
