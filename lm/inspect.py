"""Numbers from inside a model, for the app's views: one forward pass with every
intermediate kept, each token's loss, predictions with heads switched off, and where
the last token looks. Each goes through GPT.forward with a Probe, so the model's own
loop computes everything once. Models are cached and shared between sessions, so these
functions only read one: no mode switch, no hook, no weight change (a head mask is an
argument). Results are float32 on the CPU: tensors for the whole pass, numpy arrays for
what a view draws."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from lm.attention import AttentionSteps, Probe
from lm.model import GPT, GPTOutput


def _batch(model: GPT, ids: list[int]) -> torch.Tensor:
    """One sequence of 1 to block_size ids as a batch of one, on the model's device."""
    if not 0 < len(ids) <= model.config.block_size:
        raise ValueError(f"need 1 to {model.config.block_size} tokens, got {len(ids)}")
    return torch.tensor([ids], device=model.lm_head.weight.device)


def _run(model: GPT, ids: list[int], probe: Probe = Probe()) -> GPTOutput:
    """The model on one sequence of 1 to block_size ids (batch of one)."""
    return model(_batch(model, ids), probe=probe)


# --- the whole pass ---------------------------------------------------------------------


@dataclass(frozen=True)
class ForwardPass:
    """One text through the model with every intermediate kept, layers first."""

    ids: tuple[int, ...]
    attention: AttentionSteps  # every layer's steps: [layers, heads, T, head size or T]
    residuals: torch.Tensor  # [layers, T, n_embd]: the residual stream after each block
    logits: torch.Tensor  # [T, vocab]


@torch.inference_mode()
def forward_pass(model: GPT, ids: list[int]) -> ForwardPass:
    """Everything the model computes on `ids` (1 to block_size of them), kept."""
    out = _run(model, ids, Probe(explain=True, residuals=True))
    attention = AttentionSteps(
        *(_layers([getattr(steps, part.name) for steps in out.attention]) for part in fields(AttentionSteps))
    )
    return ForwardPass(tuple(ids), attention, _layers(out.residuals), out.logits[0].float().cpu())


PAGE_PARTS = ("q", "k", "v", "scores", "weights", "output")  # what the Attention page shows of AttentionSteps


@torch.inference_mode()
def attention_pass(
    model: GPT, ids: list[int], parts: tuple[str, ...] = PAGE_PARTS, layer: int | None = None
) -> dict[str, torch.Tensor]:
    """These `parts` of every layer's attention steps on `ids` (1 to block_size of them),
    each [layers, heads, T, head size or T], or of one `layer` only, each [heads, T, …]:
    forward_pass's attention without what attention views do not show, the residuals, the
    masked scores and the logits (each a copy, and the head a matmul over the vocabulary: a
    fifth of SmolLM2-135M's pass on 128 tokens). Each layer's parts are copied out as its
    attention ends, so its other steps are freed for the next layer, and the pass stops after
    the last attention it needs: what comes after it (the last block's MLP, or every layer after
    `layer`) changes none of these numbers."""
    if layer is not None and not 0 <= layer < model.config.n_layer:
        raise ValueError(f"the model has layers 0 to {model.config.n_layer - 1}, not {layer}")
    kept: dict[str, torch.Tensor] = {}

    def keep_all(at: int, steps: AttentionSteps) -> None:
        for part in parts:
            one = getattr(steps, part)[0]
            if part not in kept:
                kept[part] = torch.empty(model.config.n_layer, *one.shape)  # float32 on the CPU
            kept[part][at] = one
        if at == model.config.n_layer - 1:
            raise _Kept

    def keep_one(at: int, steps: AttentionSteps) -> None:
        if at == layer:
            kept.update({part: getattr(steps, part)[0].float().cpu().clone() for part in parts})
            raise _Kept

    try:
        model.hidden(_batch(model, ids), Probe(explain=True, keep_steps=keep_all if layer is None else keep_one))
    except _Kept:
        pass
    return {part: kept[part] for part in parts}


class _Kept(Exception):
    """Raised by attention_pass's keep_steps once it holds every layer it asked for."""


def _layers(per_layer: list[torch.Tensor]) -> torch.Tensor:
    """One tensor [layers, ...] from each layer's [1, ...]: the batch of one dropped."""
    return torch.stack([t[0] for t in per_layer]).float().cpu()


@torch.inference_mode()
def attention_weights(model: GPT, ids: list[int]) -> torch.Tensor:
    """[layers, heads, T, T]: every head's attention weights on the last block_size of `ids`."""
    return attention_pass(model, ids[-model.config.block_size :], ("weights",))["weights"]


def last_token_attention(model: GPT, ids: list[int]) -> np.ndarray:
    """[layers, heads, T]: where the last of the model's window of `ids` looks in each head.
    Its output is what the next-token probabilities are made from."""
    return attention_weights(model, ids)[:, :, -1].numpy()


# --- heads switched off -----------------------------------------------------------------


def head_mask(
    n_layer: int, n_head: int, heads_off: Iterable[tuple[int, int]] = (), layers_off: Iterable[int] = ()
) -> torch.Tensor:
    """[n_layer, n_head] of ones, with 0 for each (layer, head) in `heads_off` and every head of `layers_off`."""
    mask = torch.ones(n_layer, n_head)
    for layer, head in heads_off:
        mask[layer, head] = 0.0
    for layer in layers_off:
        mask[layer] = 0.0
    return mask


@dataclass(frozen=True)
class Prediction:
    """One forward pass over a text: each token's loss given those before it, and the
    probabilities of the token after the text."""

    losses: np.ndarray  # [T − 1]: losses[j] = −ln p(ids[j + 1] | ids[:j + 1])
    next_probs: np.ndarray  # [tokenizer vocabulary]

    @property
    def mean_loss(self) -> float:
        return float(self.losses.mean()) if len(self.losses) else float("nan")


@torch.inference_mode()
def predict(
    model: GPT, ids: list[int], n_tokens: int, heads_off: Iterable[tuple[int, int]] = (), layers_off: Iterable[int] = ()
) -> Prediction:
    """The model on `ids` (1 to block_size of them) with the (layer, head) pairs in `heads_off`
    and every head of `layers_off` silenced: their outputs are zeroed before the heads are
    mixed, so the rest of the model runs as it is. The next-token probabilities are over the
    tokenizer's `n_tokens` ids (a model's padded rows are no token)."""
    heads_off, layers_off = list(heads_off), list(layers_off)
    config = model.config
    mask = head_mask(config.n_layer, config.n_head, heads_off, layers_off) if heads_off or layers_off else None
    logits = _run(model, ids, Probe(head_mask=mask)).logits[0, :, :n_tokens].float()
    losses = F.cross_entropy(logits[:-1], torch.tensor(ids[1:], dtype=torch.long, device=logits.device), reduction="none")
    return Prediction(losses.cpu().numpy(), torch.softmax(logits[-1], dim=-1).cpu().numpy())


# --- scoring a text longer than the context ---------------------------------------------


@dataclass
class TextScore:
    ids: list[int]
    losses: list[float] = field(default_factory=list)  # losses[j]: -ln p(ids[j + 1] | what came before)
    expected: list[int] = field(default_factory=list)  # the model's most likely token at each of those places
    windows: int = 0  # forward passes needed; more than 1 when the text outgrew the context
    min_context: int = 0  # past the first window, every token is predicted from at least this many tokens

    @property
    def mean_loss(self) -> float:
        return sum(self.losses) / len(self.losses)

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean_loss)


@torch.inference_mode()
def score_ids(model: GPT, ids: list[int]) -> TextScore:
    """Each token's cross-entropy given the tokens before it (the first has none, so is not
    scored). A text longer than the context is read in windows that overlap by half; each
    token is scored in the first window that holds it, so past the first window every
    token has at least half a context behind it."""
    if len(ids) < 2:
        raise ValueError("scoring needs at least two tokens: the first has nothing before it")
    block = model.config.block_size
    stride = max(1, block // 2)
    score = TextScore(list(ids), min_context=block - stride + 1)
    start = 0
    while len(score.losses) < len(ids) - 1:
        window = ids[start : start + block + 1]
        logits = _run(model, window[:-1]).logits[0].float()
        targets = torch.tensor(window[1:], device=logits.device)
        new = slice(len(score.losses) - start, len(targets))
        score.losses += F.cross_entropy(logits[new], targets[new], reduction="none").tolist()
        score.expected += logits[new].argmax(dim=-1).tolist()
        score.windows += 1
        start += stride
    return score
