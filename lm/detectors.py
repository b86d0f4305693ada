"""Head detectors: a score in [0, 1] for each head saying how much it behaves like a
known kind of head. Each detector reads one attention tensor `weights`
[n_layer, n_head, T, T] (row i = query i's softmaxed, causal weights over keys 0…i)
and returns [n_layer, n_head]: the weight a head puts where that kind of head looks,
averaged over the queries where the question makes sense (0 when there are none).

Query 0 can only look at itself (its weight on key 0 is always 1), so it tells
nothing about a head and no detector counts it.

An induction head ("the last time this token came, what came next? say that") is
found on the standard probe: random tokens, then the same tokens again, where only
copying from the first half can predict the second.
"""

from __future__ import annotations

import torch

from lm import inspect
from lm.model import GPT
from lm.run_folder import DETECTORS_FILE, Run

DETECTORS: dict[str, str] = {
    "previous_token": "Each token looks at the token just before it.",
    "duplicate_token": "Each token looks at earlier copies of itself.",
    "induction": "Each token looks at what came right after its earlier copies, to predict it comes again.",
    "first_token": "Each token looks at the first token (an 'attention sink': a place to park attention).",
    "self": "Each token looks at itself.",
}

PROBE_LENGTH = 50  # random tokens in each half of the induction probe, as in TransformerLens


def _mean_over_queries(weights: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The weight each query puts on its `targets` ([T, T] booleans, row = query), averaged
    over the queries that have at least one target; 0 where no query has one."""
    targets = targets.to(weights.device)
    has_target = targets.any(dim=-1)
    if not has_target.any():
        return torch.zeros(weights.shape[:2], device=weights.device)
    on_targets = (weights.float() * targets).sum(dim=-1)  # [L, H, T]
    return on_targets[..., has_target].mean(dim=-1).clamp(0.0, 1.0)


def _diagonal(T: int, offset: int) -> torch.Tensor:
    """Targets for every query i ≥ 1: key i + offset (0: itself, −1: the token before)."""
    targets = torch.zeros(T, T, dtype=torch.bool)
    queries = torch.arange(1, T)
    targets[queries, queries + offset] = True
    return targets


def previous_token_score(weights: torch.Tensor) -> torch.Tensor:
    """Mean over queries i ≥ 1 of w[i, i−1]."""
    return _mean_over_queries(weights, _diagonal(weights.shape[-1], -1))


def self_score(weights: torch.Tensor) -> torch.Tensor:
    """Mean over queries i ≥ 1 of w[i, i]. Query 0 is left out: it must look at itself,
    and counting it would credit every head with 1/T for nothing."""
    return _mean_over_queries(weights, _diagonal(weights.shape[-1], 0))


def first_token_score(weights: torch.Tensor) -> torch.Tensor:
    """Mean over queries i ≥ 1 of w[i, 0]."""
    T = weights.shape[-1]
    targets = torch.zeros(T, T, dtype=torch.bool)
    targets[1:, 0] = True
    return _mean_over_queries(weights, targets)


def _same_token(ids: list[int] | torch.Tensor) -> torch.Tensor:
    """[T, T]: True where key j < query i holds the same token as the query."""
    ids = torch.as_tensor(ids)
    return (ids[:, None] == ids[None, :]).tril(diagonal=-1)


def duplicate_token_score(weights: torch.Tensor, ids: list[int] | torch.Tensor) -> torch.Tensor:
    """Over the queries i whose token also occurs earlier (at some j < i), the mean of the
    total weight on those earlier copies."""
    return _mean_over_queries(weights, _same_token(ids))


def induction_score(weights: torch.Tensor, ids: list[int] | torch.Tensor) -> torch.Tensor:
    """Over the queries i whose token occurred earlier at some j with j + 1 < i, the mean of
    the total weight on the keys j + 1: the tokens that followed the earlier copies.
    (j + 1 = i would be the query itself, which is self-attention, not induction.)"""
    copies = _same_token(ids)
    T = copies.shape[-1]
    targets = torch.zeros(T, T, dtype=torch.bool)
    targets[:, 1:] = copies[:, :-1]  # key j+1 is a target where key j is an earlier copy
    targets &= torch.ones(T, T, dtype=torch.bool).tril(diagonal=-1)  # keep j + 1 < i
    return _mean_over_queries(weights, targets)


def repeated_random_tokens(vocabulary: int | list[int], length: int, seed: int = 0) -> list[int]:
    """`length` random tokens drawn from `vocabulary` (a vocabulary size, or the token ids
    to draw from), then the same `length` again. No token repeats within a half when the
    vocabulary is big enough, so each second-half token has exactly one earlier copy and
    one right answer to copy."""
    pool = torch.arange(vocabulary) if isinstance(vocabulary, int) else torch.as_tensor(vocabulary)
    generator = torch.Generator().manual_seed(seed)
    if length <= len(pool):
        half = pool[torch.randperm(len(pool), generator=generator)[:length]]
    else:
        half = pool[torch.randint(len(pool), (length,), generator=generator)]
    return half.tolist() * 2


def attention_weights(model: GPT, ids: list[int]) -> torch.Tensor:
    """[n_layer, n_head, T, T] attention weights of `model` on `ids` (the last block_size
    of them), in eval mode (no dropout): the trainer asks mid-training, and the model's
    mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        return inspect.attention_weights(model, ids)
    finally:
        model.train(was_training)


def scores_from_weights(
    weights: torch.Tensor, ids: list[int], probe_weights: torch.Tensor, probe_ids: list[int]
) -> dict[str, torch.Tensor]:
    """All five detectors in DETECTORS order: induction on the repeated-random probe, the rest on the text."""
    return {
        "previous_token": previous_token_score(weights),
        "duplicate_token": duplicate_token_score(weights, ids),
        "induction": induction_score(probe_weights, probe_ids),
        "first_token": first_token_score(weights),
        "self": self_score(weights),
    }


def head_scores(model: GPT, ids: list[int], seed: int = 0, vocabulary: list[int] | None = None,
                weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Every detector for every head: [n_layer, n_head] float tensors on the CPU, keyed as
    DETECTORS. Induction is measured on repeated_random_tokens(vocabulary, PROBE_LENGTH, seed)
    (shorter halves when the context cannot hold two), the others on `ids`. `vocabulary`
    (default: every id the model has) is where the probe draws from: a model trained on a
    small alphabet, as a synthetic task's, is probed with tokens it has seen. `weights`:
    attention_weights(model, ids), where the caller has them already (no second pass)."""
    if not ids:
        raise ValueError("head_scores needs at least one token")
    ids = list(ids)[-model.config.block_size :]
    length = max(1, min(PROBE_LENGTH, model.config.block_size // 2))
    probe = repeated_random_tokens(model.config.vocab_size if vocabulary is None else vocabulary, length, seed)
    weights = attention_weights(model, ids) if weights is None else weights
    return scores_from_weights(weights, ids, attention_weights(model, probe), probe)


def snapshot(run: Run, step: int, model: GPT, ids: list[int], tokenizer, vocabulary: list[int] | None = None):
    """A run folder's look at its heads at `step`, as training and an imported training write it:
    every head's attention on the probe `ids` (float16) and a line of each head's scores;
    probe.json (written once) says what the probe is: its ids and the tokenizer's text of each."""
    run.write_probe(ids, [tokenizer.token_bytes(i).decode("utf-8", errors="replace") for i in ids])
    weights = attention_weights(model, ids)
    run.write_snapshot(step, weights.to(torch.float16))
    scores = head_scores(model, ids, vocabulary=vocabulary, weights=weights)
    run.append(DETECTORS_FILE, {"step": step, "scores": {k: v.tolist() for k, v in scores.items()}})
