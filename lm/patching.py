"""Activation patching: which activations cause the answer?

Two prompts of the same length differ in one place: the clean one ("When Mary and John went
to the store, John gave a drink to" → Mary) and the corrupted one (a name swapped → John).
Run the corrupted prompt, but copy one activation in from the clean run: the residual
stream entering a layer at one position, or one head's output at every position. If the
clean answer comes back, that activation carried it. The measure is the logit difference
at the last position, logit(clean answer) − logit(corrupted answer), as a share of the way
from the corrupted run's value (0) to the clean run's (1).

Patched runs go through the model's own blocks; a block whose heads are patched is walked
part by part (lm.trace.step, checked against the model by lm.trace.trace). Exact patching
costs one patched run per cell (batched, each run starting at its layer): seconds on a small model, minutes
on GPT-2 small; lm.attribution_patching estimates every cell at once and checks the strongest."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
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


def shared_prefix(run: Trace, length: int) -> KVCache | None:
    """Every layer's keys and values for the first `length` positions of a traced run (what the
    model's own KV cache would hold): positions before the prompts' first difference are the
    same in every run, patched or not, so each patched run computes only the positions after them."""
    if length == 0:
        return None
    cache = KVCache(len(run.layers), len(run.ids))
    for layer, parts in enumerate(run.layers):
        cache.extend(layer, parts.keys[:, :, :length], parts.values[:, :, :length])
    return cache


def _layer_cache(prefix: KVCache | None, layer: int, rows: int, capacity: int) -> KVCache | None:
    """A fresh cache holding `prefix`'s keys and values of `layer` for each of `rows` runs."""
    if prefix is None:
        return None
    cache = KVCache(len(prefix.keys), capacity)
    end = prefix.lengths[layer]
    k, v = prefix.keys[layer][:, :, :end], prefix.values[layer][:, :, :end]
    cache.extend(layer, k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1))
    return cache


@torch.inference_mode()
def run_patched(model: GPT, clean: Trace, corrupted: Trace, patches: list[Patch], prefix: KVCache | None = None
                ) -> torch.Tensor:
    """The final residual stream [len(patches), T − s, n_embd] of the corrupted run with each
    patch applied (one batch row each), for the positions after the `prefix`'s s (see
    shared_prefix: the two runs agree before s, so patching there changes nothing). One pass
    through the layers: each row joins the batch at its first patched layer, from the corrupted
    run's residual stream there, since the layers before it are the corrupted run's."""
    s = len(prefix) if prefix is not None else 0
    order = sorted(range(len(patches)), key=lambda row: patches[row].first_layer())
    ordered = [patches[row] for row in order]
    x = None
    for layer in range(ordered[0].first_layer(), model.config.n_layer):
        joining = sum(patch.first_layer() == layer for patch in ordered)
        if joining:
            fresh = resid_pre(corrupted, layer)[:, s:].expand(joining, -1, -1)
            x = fresh.clone() if x is None else torch.cat([x, fresh])
        active, block = ordered[: len(x)], model.transformer.h[layer]
        clean_in = resid_pre(clean, layer)[0, s:]
        for row, patch in enumerate(active):
            positions = [t - s for t in patch.residual.get(layer, ()) if t >= s]  # the runs agree before s
            x[row, positions] = clean_in[positions]
        mask = torch.tensor([[(layer, head) in patch.heads for head in range(block.attn.n_head)] for patch in active],
                            device=x.device)
        cache = _layer_cache(prefix, layer, len(active), len(clean.ids))
        if mask.any():
            heads = clean.layers[layer].heads[:, :, s:].expand(len(active), -1, -1, -1)
            x = step(block, x, heads, mask, cache).resid_post
        else:
            x = block(x, Probe(cache=cache))[0]
    final = torch.empty_like(x)
    final[torch.tensor(order, device=x.device)] = x
    return final


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
    exact: bool = True  # False: both grids are attribution patching's estimates (lm.attribution_patching)

    def strongest(self, count: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The `count` residual cells (layer, position) and heads (layer, head) that move the answer
        most, either way, largest |share| first."""
        def best(grid: np.ndarray) -> list[tuple[int, int]]:
            order = np.argsort(-np.abs(grid), axis=None, kind="stable")[:count]
            return [(int(i) // grid.shape[1], int(i) % grid.shape[1]) for i in order]

        return best(self.residual), best(self.heads)


def check_lengths(clean: int, corrupted: int) -> None:
    """PatchingError unless the prompts have as many tokens as each other."""
    if clean != corrupted:
        raise PatchingError(f"the clean prompt has {clean} tokens and the corrupted one {corrupted}: patching copies "
                            "activations position by position, so they must have the same number of tokens")


def check_prompts(clean_ids: list[int], corrupted_ids: list[int]) -> tuple[int, ...]:
    """The positions where the prompts differ; PatchingError when they cannot be compared."""
    check_lengths(len(clean_ids), len(corrupted_ids))
    if list(clean_ids) == list(corrupted_ids):
        raise PatchingError("the two prompts are the same: change a word in the corrupted one")
    return tuple(t for t, (x, y) in enumerate(zip(clean_ids, corrupted_ids)) if x != y)


def logit_difference(model: GPT, direction: torch.Tensor, final: torch.Tensor) -> torch.Tensor:
    """[batch]: the logit difference at the last position, from final residual streams [batch, T, n_embd]."""
    return model.transformer.ln_f(final[:, -1]) @ direction


@dataclass(frozen=True)
class Runs:
    """The clean and corrupted runs, and the logit difference patching measures on them."""

    clean: Trace
    corrupted: Trace
    answers: tuple[int, int]  # (clean, corrupted)
    direction: torch.Tensor  # the head's row of the clean answer less the corrupted one's
    differences: tuple[float, float]  # (clean run, corrupted run)
    differ: tuple[int, ...]

    def difference(self, model: GPT, final: torch.Tensor) -> torch.Tensor:
        return logit_difference(model, self.direction, final)

    def shares(self, restored: torch.Tensor) -> np.ndarray:
        """The share of the way from the corrupted run's difference to the clean run's."""
        clean, corrupted = self.differences
        return ((restored - corrupted) / (clean - corrupted)).float().cpu().numpy()

    def patching(self, residual: np.ndarray, heads: np.ndarray, exact: bool) -> Patching:
        return Patching(*self.answers, *self.differences, self.differ, residual, heads, exact)


def runs_of(model: GPT, clean_ids: list[int], corrupted_ids: list[int], n_tokens: int,
            answers: tuple[int | None, int | None] = (None, None), corrupted: Trace | None = None) -> Runs:
    """Both runs traced (the corrupted one may come traced already), and the two answers: given,
    or each run's own likeliest next token. PatchingError when there is nothing to compare. The
    last few are kept per model (see RunsKept): the exact check of a grid's strongest cells reuses
    the traces the grid was computed from."""
    differ = check_prompts(clean_ids, corrupted_ids)
    key = (tuple(clean_ids), tuple(corrupted_ids), n_tokens, tuple(answers))
    if (kept := KEPT.get(model, key)) is not None:
        return kept
    clean, corrupted = trace(model, clean_ids), corrupted if corrupted is not None else trace(model, corrupted_ids)
    with torch.inference_mode():
        a = answers[0] if answers[0] is not None else int(clean.logits(model, -1)[:n_tokens].argmax())
        b = answers[1] if answers[1] is not None else int(corrupted.logits(model, -1)[:n_tokens].argmax())
    if a == b:
        raise PatchingError(
            "both prompts lead to the same answer, so there is no difference to bring back: "
            "name a clean and a corrupted answer that differ"
        )
    direction = model.lm_head.weight[a] - model.lm_head.weight[b]
    with torch.inference_mode():
        differences = tuple(float(logit_difference(model, direction, run.layers[-1].resid_post))
                            for run in (clean, corrupted))
    if abs(differences[0] - differences[1]) < DIFFERENCE_FLOOR:
        raise PatchingError("the two prompts give the two answers the same logit difference: nothing to bring back")
    return KEPT.put(model, key, Runs(clean, corrupted, (a, b), direction, differences, differ))


class RunsKept:
    """The last KEPT_RUNS traced pairs of prompts per model (a GPT-2-small pair of 64 tokens holds
    about 35 MB), shared by the sessions of one server; a model that is gone takes its pairs along."""

    def __init__(self):
        self.lock = threading.Lock()
        self.runs: weakref.WeakKeyDictionary[GPT, OrderedDict] = weakref.WeakKeyDictionary()

    def get(self, model: GPT, key: tuple) -> Runs | None:
        with self.lock:
            return self.runs.get(model, {}).get(key)

    def forget(self, model: GPT) -> None:
        with self.lock:
            self.runs.pop(model, None)

    def put(self, model: GPT, key: tuple, runs: Runs) -> Runs:
        with self.lock:
            kept = self.runs.setdefault(model, OrderedDict())
            kept[key] = runs
            while len(kept) > KEPT_RUNS:
                kept.popitem(last=False)
        return runs


KEPT_RUNS = 2
KEPT = RunsKept()


@torch.inference_mode()
def patch_exactly(model: GPT, runs: Runs, residual: list[tuple[int, int]], heads: list[tuple[int, int]],
                  prefix: KVCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The share restored by each (layer, position) of the residual stream and each (layer, head)
    patched on its own: one batch of patched runs, each from its layer on (run_patched), after
    the `prefix` (see shared_prefix)."""
    patches = [Patch(residual={layer: (t,)}) for layer, t in residual] + [Patch(heads=frozenset({h})) for h in heads]
    if not patches:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    if prefix is None:
        prefix = shared_prefix(runs.corrupted, runs.differ[0])
    found = runs.shares(runs.difference(model, run_patched(model, runs.clean, runs.corrupted, patches, prefix)))
    return found[: len(residual)], found[len(residual) :]


def changed_positions(runs: Runs, layer: int) -> list[int]:
    """Positions whose residual stream entering `layer` differs between the runs (patching the others is a no-op)."""
    clean_in, corrupted_in = resid_pre(runs.clean, layer)[0], resid_pre(runs.corrupted, layer)[0]
    return [t for t in range(runs.differ[0], len(runs.clean.ids)) if not torch.equal(clean_in[t], corrupted_in[t])]


def activation_patching(model: GPT, clean_ids: list[int], corrupted_ids: list[int], n_tokens: int,
                        answers: tuple[int | None, int | None] = (None, None)) -> Patching:
    """Every residual position at every layer, and every head, patched one at a time, exactly
    (one batch of patched runs per layer)."""
    runs = runs_of(model, clean_ids, corrupted_ids, n_tokens, answers)
    L, T, H = model.config.n_layer, len(clean_ids), model.config.n_head
    residual = np.zeros((L, T), dtype=np.float32)
    heads = np.zeros((L, H), dtype=np.float32)
    prefix = shared_prefix(runs.corrupted, runs.differ[0])
    for layer in range(L):
        changed = changed_positions(runs, layer)
        residual[layer, changed], heads[layer] = patch_exactly(model, runs, [(layer, t) for t in changed],
                                                               [(layer, h) for h in range(H)], prefix)
    return runs.patching(residual, heads, exact=True)


def exact_cost(config, T: int, first_difference: int) -> float:
    """Multiply-adds of activation_patching at most (every position after the first difference
    changed): each patched run computes its layers from the patched one on, for the positions
    after the shared prefix, at about 12 · n_embd² per token and layer."""
    L, H, after = config.n_layer, config.n_head, T - first_difference
    layer_runs = sum((after + H) * (L - layer) for layer in range(L))
    return layer_runs * after * 12 * config.n_embd**2
