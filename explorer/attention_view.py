"""The Attention page's data: one forward pass kept whole (each layer's queries, keys,
values, scores and weights) over the last tokens of a text. The figures drawn from it
live in attention_maps, head_statistics, head_arithmetic and model_view."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explorer.token_view import token_label
from lm.inspect import attention_pass
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
    """Attention in every layer and head for one text, as numpy arrays: [layers, heads, T, T]
    for scores and weights, [layers, heads, T, head size] for the vectors."""

    ids: tuple[int, ...]
    labels: tuple[str, ...]  # each token's text, whitespace made visible
    queries: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    scores: np.ndarray  # q·k/√d for every pair, before the mask
    weights: np.ndarray  # softmax of each masked row: sums to 1, zero after the query
    outputs: np.ndarray  # weights @ values: what each head passes on
    windows: tuple[int | None, ...] = ()  # each layer's sliding window (None: the whole context); () none anywhere
    attn_scale_size: int | None = None  # the model's own score scale (Gemma 3's query_pre_attn_scalar); None: head size

    @property
    def head_size(self) -> int:
        return self.values.shape[-1]

    @property
    def scale_size(self) -> int:
        """Scores are q·k/√ of this: the head size unless the model sets its own."""
        return self.attn_scale_size or self.head_size

    def masked(self, layer: int, head: int) -> np.ndarray:
        """One head's scores after the causal mask (the model's own, tested): −inf where the key
        comes later or, in a layer with a sliding window, window or more positions earlier."""
        visible = np.tril(np.ones((len(self.ids),) * 2, dtype=bool))
        window = self.windows[layer] if self.windows else None
        if window:
            visible = np.triu(visible, k=1 - window)
        return np.where(visible, self.scores[layer, head], -np.inf)


def run_attention(model: GPT, tokenizer, ids: list[int]) -> AttentionRun:
    """lm.inspect.attention_pass on 1 to block_size ids, as numpy arrays with each token's label.
    Reads the model, never changes it (it is shared between sessions)."""
    steps = {part: tensor.numpy() for part, tensor in attention_pass(model, ids).items()}
    return AttentionRun(
        tuple(ids), tuple(token_label(tokenizer.token_bytes(i)) for i in ids),
        queries=steps["q"], keys=steps["k"], values=steps["v"],
        scores=steps["scores"], weights=steps["weights"], outputs=steps["output"],
        windows=tuple(model.config.windowed(layer) for layer in range(model.config.n_layer)),
        attn_scale_size=model.config.attn_scale_size,
    )
