"""Activation patching: which activations cause the answer?

Two prompts of the same length differ in one place: the clean one ("When Mary and John went
to the store, John gave a drink to" → Mary) and the corrupted one (a name swapped → John).
Run the corrupted prompt, but copy one activation in from the clean run: the residual
stream entering a layer at one position, or one head's output at every position. If the
clean answer comes back, that activation carried it. The measure is the logit difference
at the last position, logit(clean answer) − logit(corrupted answer), as a share of the way
from the corrupted run's value (0) to the clean run's (1).

Patched runs go through the model's own blocks; a block whose heads are patched is walked
part by part (lm.trace.step, checked against the model by lm.trace.trace)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lm.attention import KVCache, Probe
from lm.model import GPT
from lm.trace import Trace, step, trace

DIFFERENCE_FLOOR = 1e-4  # a clean and corrupted logit difference closer than this leave nothing to restore


class PatchingError(ValueError):
    """Prompts or answers patching cannot compare; the message says what to change."""


@dataclass(frozen=True)
class Patch:
    """What one patched run copies from the clean run: the residual stream entering layer l at
    these positions ({l: positions}), and the outputs of these (layer, head) pairs."""

    residual: dict[int, tuple[int, ...]] = field(default_factory=dict)
    heads: frozenset[tuple[int, int]] = frozenset()

    def first_layer(self) -> int:
        return min([*self.residual, *(layer for layer, _ in self.heads)], default=0)


def resid_pre(run: Trace, layer: int) -> torch.Tensor:
    """[1, T, n_embd]: the residual stream entering `layer`."""
    return run.embeddings if layer == 0 else run.layers[layer - 1].resid_post


@torch.inference_mode()
def shared_prefix(model: GPT, ids: list[int], length: int) -> KVCache | None:
    """Every layer's keys and values for the first `length` ids (the model's own KV cache):
    positions before the prompts' first difference are the same in every run, patched or
    not, so each patched run computes only the positions after them."""
    if length == 0:
        return None
    cache = KVCache(model.config.n_layer, len(ids))
    model(torch.tensor([ids[:length]], device=model.lm_head.weight.device), probe=Probe(cache=cache))
    return cache


def _batch_of(prefix: KVCache | None, rows: int, capacity: int) -> KVCache | None:
    """A fresh cache holding `prefix` for each of `rows` runs."""
    if prefix is None:
        return None
    cache = KVCache(len(prefix.keys), capacity)
    for layer, (k, v) in enumerate(zip(prefix.keys, prefix.values)):
        end = prefix.lengths[layer]
        cache.extend(layer, k[:, :, :end].expand(rows, -1, -1, -1), v[:, :, :end].expand(rows, -1, -1, -1))
    return cache


@torch.inference_mode()
def run_patched(model: GPT, clean: Trace, corrupted: Trace, patches: list[Patch], prefix: KVCache | None = None
                ) -> torch.Tensor:
    """The final residual stream [len(patches), T − s, n_embd] of the corrupted run with each
    patch applied (one batch row each), for the positions after the `prefix`'s s (see
    shared_prefix: the two runs agree before s, so patching there changes nothing). Layers
    before the first patched one are the corrupted run's."""
    s = len(prefix) if prefix is not None else 0
    start = min(patch.first_layer() for patch in patches)
    x = resid_pre(corrupted, start)[:, s:].repeat(len(patches), 1, 1)
    cache = _batch_of(prefix, len(patches), len(clean.ids))
    for layer in range(start, model.config.n_layer):
        block = model.transformer.h[layer]
        clean_in = resid_pre(clean, layer)[0, s:]
        for row, patch in enumerate(patches):
            positions = [t - s for t in patch.residual.get(layer, ()) if t >= s]  # the runs agree before s
            x[row, positions] = clean_in[positions]
        mask = torch.tensor([[(layer, head) in patch.heads for head in range(block.attn.n_head)] for patch in patches],
                            device=x.device)
        if mask.any():
            heads = clean.layers[layer].heads[:, :, s:].expand(len(patches), -1, -1, -1)
            x = step(block, x, heads, mask, cache).resid_post
        else:
            x = block(x, Probe(cache=cache))[0]
    return x


@dataclass(frozen=True)
class Patching:
    """How much of the clean answer each patch brings back: 0 = as corrupted, 1 = as clean."""

    clean_answer: int
    corrupted_answer: int
    clean_difference: float  # logit(clean answer) − logit(corrupted answer), clean run
    corrupted_difference: float  # the same in the corrupted run
    differ: tuple[int, ...]  # positions where the prompts differ
    residual: np.ndarray  # [n_layer, T]: the residual stream entering layer l at position t patched
    heads: np.ndarray  # [n_layer, n_head]: one head's output patched at every position


def compare(model: GPT, clean_ids: list[int], corrupted_ids: list[int], n_tokens: int,
            answers: tuple[int | None, int | None] = (None, None)) -> tuple[Trace, Trace, int, int]:
    """Both runs traced, and the two answers: given, or each run's own likeliest next token."""
    if len(clean_ids) != len(corrupted_ids):
        raise PatchingError(
            f"the clean prompt has {len(clean_ids)} tokens and the corrupted one {len(corrupted_ids)}: patching "
            "copies activations position by position, so they must have the same number of tokens"
        )
    if list(clean_ids) == list(corrupted_ids):
        raise PatchingError("the two prompts are the same: change a word in the corrupted one")
    clean, corrupted = trace(model, clean_ids), trace(model, corrupted_ids)
    a = answers[0] if answers[0] is not None else int(clean.logits(model, -1)[:n_tokens].argmax())
    b = answers[1] if answers[1] is not None else int(corrupted.logits(model, -1)[:n_tokens].argmax())
    if a == b:
        raise PatchingError(
            "both prompts lead to the same answer, so there is no difference to bring back: "
            "name a clean and a corrupted answer that differ"
        )
    return clean, corrupted, a, b


@torch.inference_mode()
def activation_patching(model: GPT, clean_ids: list[int], corrupted_ids: list[int], n_tokens: int,
                        answers: tuple[int | None, int | None] = (None, None)) -> Patching:
    """Every residual position at every layer, and every head, patched one at a time."""
    clean, corrupted, a, b = compare(model, clean_ids, corrupted_ids, n_tokens, answers)
    direction = model.lm_head.weight[a] - model.lm_head.weight[b]

    def difference(final: torch.Tensor) -> torch.Tensor:  # the logit difference at the last position
        return model.transformer.ln_f(final[:, -1]) @ direction

    clean_diff, corrupted_diff = float(difference(clean.layers[-1].resid_post)), float(
        difference(corrupted.layers[-1].resid_post))
    if abs(clean_diff - corrupted_diff) < DIFFERENCE_FLOOR:
        raise PatchingError("the two prompts give the two answers the same logit difference: nothing to bring back")

    differ = tuple(t for t, (x, y) in enumerate(zip(clean_ids, corrupted_ids)) if x != y)
    prefix = shared_prefix(model, list(corrupted_ids), differ[0])

    def share(patches: list[Patch]) -> np.ndarray:
        restored = difference(run_patched(model, clean, corrupted, patches, prefix))
        return ((restored - corrupted_diff) / (clean_diff - corrupted_diff)).float().cpu().numpy()

    L, T, H = model.config.n_layer, len(clean_ids), model.config.n_head
    residual = np.zeros((L, T), dtype=np.float32)
    for layer in range(L):
        clean_in, corrupted_in = resid_pre(clean, layer)[0], resid_pre(corrupted, layer)[0]
        changed = [t for t in range(differ[0], T) if not torch.equal(clean_in[t], corrupted_in[t])]  # else a no-op
        if changed:
            residual[layer, changed] = share([Patch(residual={layer: (t,)}) for t in changed])
    head_shares = np.stack([share([Patch(heads=frozenset({(layer, h)})) for h in range(H)]) for layer in range(L)])
    return Patching(a, b, clean_diff, corrupted_diff, differ, residual, head_shares)
