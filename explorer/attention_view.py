"""The Attention page's data over the last tokens of a text: every layer's attention
weights, and one layer's queries, keys, values and scores for the step-through. The figures
drawn from them live in attention_maps, head_statistics, head_arithmetic and model_view."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explorer.token_view import token_label
from lm.inspect import PAGE_PARTS, attention_pass
from lm.model import GPT

MAX_TOKENS = 256  # beyond this a T×T map has more cells than a screen has pixels to show them


# --- the forward pass -----------------------------------------------------------------


def context_window(ids: list[int], block_size: int) -> tuple[list[int], int]:
    """The last tokens the page shows: a model reads at most `block_size` at once, and the
    page draws at most MAX_TOKENS. Returns them and how many were cut from the front."""
    keep = min(block_size, MAX_TOKENS)
    return ids[-keep:], max(0, len(ids) - keep)


@dataclass(frozen=True)
class AttentionRun:
    """Where every head of every layer looks for one text: the weights [layers, heads, T, T],
    all the maps, grid, statistics and the home picture draw. One layer's queries, keys,
    values and scores (LayerSteps) are a pass of their own: only the step-through shows them,
    and keeping them for every layer made the page's pass slower than transformers'."""

    ids: tuple[int, ...]
    labels: tuple[str, ...]  # each token's text, whitespace made visible
    weights: np.ndarray  # softmax of each masked row: sums to 1, zero after the query


@dataclass(frozen=True)
class LayerSteps:
    """One layer's attention for one text, every head: [heads, T, T] for scores and weights,
    [heads, T, head size] for the vectors."""

    layer: int
    labels: tuple[str, ...]
    queries: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    scores: np.ndarray  # q·k/√d for every pair, before the mask
    weights: np.ndarray  # softmax of each masked row: sums to 1, zero after the query
    outputs: np.ndarray  # weights @ values: what each head passes on
    window: int | None = None  # the layer's sliding window; None: the whole context
    attn_scale_size: int | None = None  # the model's own score scale (Gemma 3's query_pre_attn_scalar); None: head size

    @property
    def head_size(self) -> int:
        return self.values.shape[-1]

    @property
    def scale_size(self) -> int:
        """Scores are q·k/√ of this: the head size unless the model sets its own."""
        return self.attn_scale_size or self.head_size

    def masked(self, head: int) -> np.ndarray:
        """One head's scores after the causal mask (the model's own, tested): −inf where the key
        comes later or, with a sliding window, window or more positions earlier."""
        visible = np.tril(np.ones((len(self.labels),) * 2, dtype=bool))
        if self.window:
            visible = np.triu(visible, k=1 - self.window)
        return np.where(visible, self.scores[head], -np.inf)


def _labels(tokenizer, ids: list[int]) -> tuple[str, ...]:
    return tuple(token_label(tokenizer.token_bytes(i)) for i in ids)


def run_attention(model: GPT, tokenizer, ids: list[int]) -> AttentionRun:
    """Every layer's attention weights on 1 to block_size ids (lm.inspect.attention_pass), as
    numpy, with each token's label. Reads the model, never changes it (it is shared between sessions)."""
    weights = attention_pass(model, ids, ("weights",))["weights"].numpy()
    return AttentionRun(tuple(ids), _labels(tokenizer, ids), weights)


def run_layer(model: GPT, tokenizer, ids: list[int], layer: int) -> LayerSteps:
    """One layer's attention steps on 1 to block_size ids, as numpy, the same numbers as the
    whole pass's; the model runs to its end, keeping nothing of the other layers."""
    steps = {part: tensor.numpy() for part, tensor in attention_pass(model, ids, PAGE_PARTS, layer).items()}
    return LayerSteps(
        layer, _labels(tokenizer, ids),
        queries=steps["q"], keys=steps["k"], values=steps["v"],
        scores=steps["scores"], weights=steps["weights"], outputs=steps["output"],
        window=model.config.windowed(layer), attn_scale_size=model.config.attn_scale_size,
    )
