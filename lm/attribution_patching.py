"""Attribution patching: both patching grids from one backward pass, as estimates.

Patching an activation replaces its corrupted value a by the clean one a′; to first order the
logit difference then moves by (a′ − a) · ∂difference/∂a, the gradient taken on the corrupted
run (Neel Nanda, "Attribution patching: activation patching at industrial scale", 2023; Syed,
Rager and Conmy, "Attribution patching outperforms automated circuit discovery", 2023). One pass
of each prompt and one backward pass of the corrupted one give every cell of both grids, where
exact patching needs one patched run per cell (GPT-2 small, 64 tokens: about 900 runs).

The estimate is exact where the difference is linear in the activation, and can be far off
where patching changes a lot through the nonlinear parts (the softmax of later attention, GELU,
the norms): the residual stream at the changed token in early layers is the known weak spot.
So `choose_patching` patches exactly when that is affordable, and otherwise the strongest cells
are checked with real patched runs (lm.patching.patch_exactly)."""

from __future__ import annotations

import numpy as np
import torch

from lm.model import GPT
from lm.patching import (Patching, Runs, activation_patching, check_prompts, exact_cost, logit_difference,
                         patch_exactly, runs_of)
from lm.trace import Trace, verify_walk, walk

EXACT_BUDGET = 1e10  # multiply-adds (exact_cost) up to which every cell is patched exactly: ~1 s on one busy core
CHECKED = 2  # the strongest estimated cells of each grid patched exactly by default: GPT-2 small's 2 + 2 stay
#              under 2 s on a busy core together with the grids (benchmarks/inside_model.py); a student can add more


def attribution_patching(model: GPT, clean_ids: list[int], corrupted_ids: list[int], n_tokens: int,
                         answers: tuple[int | None, int | None] = (None, None)) -> Patching:
    """Every residual position at every layer, and every head, estimated from the gradient of the
    logit difference in the corrupted run (Patching.exact is False)."""
    check_prompts(clean_ids, corrupted_ids)
    idx = torch.tensor([corrupted_ids], device=model.lm_head.weight.device)
    with torch.inference_mode(False), torch.enable_grad():
        embeddings, layers = walk(model, idx, leaf=True)
        verify_walk(model, idx, layers)
        corrupted = Trace(tuple(corrupted_ids), embeddings, layers, model.transformer.ln_f(layers[-1].resid_post))
        runs = runs_of(model, clean_ids, corrupted_ids, n_tokens, answers, corrupted.detached())
        difference = logit_difference(model, runs.direction.detach(), layers[-1].resid_post).sum()
        wanted = [parts.resid_pre for parts in layers] + [parts.heads for parts in layers]
        grads = torch.autograd.grad(difference, wanted)
    L = len(layers)
    with torch.inference_mode():
        return runs.patching(*estimates(runs, grads[:L], grads[L:]), exact=False)


def estimates(runs: Runs, resid_grads: list[torch.Tensor], head_grads: list[torch.Tensor]
              ) -> tuple[np.ndarray, np.ndarray]:
    """Shares restored, to first order: [n_layer, T] for the residual stream, [n_layer, n_head] for heads."""
    corrupted_difference = runs.differences[1]
    residual, heads = [], []
    for layer, (clean, corrupted) in enumerate(zip(runs.clean.layers, runs.corrupted.layers)):
        residual.append(((clean.resid_pre - corrupted.resid_pre) * resid_grads[layer]).sum(-1)[0])  # [T]
        heads.append(((clean.heads - corrupted.heads) * head_grads[layer]).sum((-1, -2))[0])  # [n_head]
    return (runs.shares(corrupted_difference + torch.stack(residual)),
            runs.shares(corrupted_difference + torch.stack(heads)))


def choose_patching(model: GPT, clean_ids: list[int], corrupted_ids: list[int], n_tokens: int,
                    answers: tuple[int | None, int | None] = (None, None), budget: float | None = None) -> Patching:
    """Exact patching of every cell when its cost (exact_cost) is within `budget` (None: EXACT_BUDGET),
    else attribution patching."""
    differ = check_prompts(clean_ids, corrupted_ids)
    if exact_cost(model.config, len(clean_ids), differ[0]) <= (EXACT_BUDGET if budget is None else budget):
        return activation_patching(model, clean_ids, corrupted_ids, n_tokens, answers)
    return attribution_patching(model, clean_ids, corrupted_ids, n_tokens, answers)


def check_strongest(model: GPT, clean_ids: list[int], corrupted_ids: list[int], n_tokens: int,
                    answers: tuple[int | None, int | None], residual: list[tuple[int, int]],
                    heads: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The exact shares of chosen cells: (layer, position) of the residual stream, (layer, head); from
    the traces the grids were computed from when they are still kept (lm.patching.runs_of)."""
    return patch_exactly(model, runs_of(model, clean_ids, corrupted_ids, n_tokens, answers), residual, heads)
