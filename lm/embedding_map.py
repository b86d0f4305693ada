"""The token embedding as a map: each token's vector projected onto the plane that keeps the
most of their spread (PCA), and each token's nearest neighbours by cosine similarity. Tokens
used alike end up with similar vectors, so neighbours often share a meaning or a form."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lm.model import GPT


EXACT_UP_TO = 2e9  # multiply-adds of the exact covariance (n_tokens · n_embd²) the map computes; GPT-2's: 3e10
SEARCHED, ITERATIONS = 12, 4  # randomized PCA: directions iterated together, and iterations


@dataclass(frozen=True)
class EmbeddingMap:
    points: np.ndarray  # [n_tokens, 2]: each token's embedding on the first two principal axes
    explained: tuple[float, float]  # the share of the embeddings' variance each axis keeps
    randomized: bool = False  # the axes found by randomized subspace iteration, not an exact eigensolver


def leading_axes(vectors: torch.Tensor, mean: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `count` leading principal axes [n_embd, count] of `vectors` [n, n_embd] and their
    variances (sums of squares), by subspace iteration from a seeded random start with a
    Rayleigh-Ritz step (Halko, Martinsson and Tropp 2011: what torch.pca_lowrank does), the
    centring kept implicit: the covariance times Q is VᵀVQ − n·μ(μ·Q), never V − μ itself.
    Each iteration reads the vectors twice and nothing of their size is allocated."""
    n = vectors.shape[0]

    def covariance_times(q: torch.Tensor) -> torch.Tensor:
        return vectors.T @ (vectors @ q) - n * mean[:, None] * (mean @ q)[None, :]

    start = torch.randn(vectors.shape[1], SEARCHED, generator=torch.Generator().manual_seed(0))
    q = torch.linalg.qr(start.to(vectors)).Q
    for _ in range(ITERATIONS):
        q = torch.linalg.qr(covariance_times(q)).Q
    values, rotation = torch.linalg.eigh((q.T @ covariance_times(q)).double())
    return (q @ rotation[:, -count:].flip(-1).to(q)), values[-count:].flip(0)


@torch.inference_mode()
def embedding_map(model: GPT, n_tokens: int, randomized: bool | None = None) -> EmbeddingMap:
    """PCA of the first `n_tokens` rows of the token embedding (a padded vocabulary's extra rows
    are no token). Exact (the eigenvectors of the n_embd × n_embd covariance) when that is cheap;
    for a large vocabulary (None: above EXACT_UP_TO) randomized subspace iteration (leading_axes),
    seeded, so the same model always gives the same map: the leading axes agree with the exact
    ones closely whenever they stand out from the rest (when they do not, no two axes summarise
    the embeddings anyway)."""
    vectors = model.transformer.wte.weight[:n_tokens].float()
    mean = vectors.mean(0)
    mean_square = float(mean.double() @ mean.double())
    total = float(torch.linalg.vector_norm(vectors, dtype=torch.float64)) ** 2 - n_tokens * mean_square  # no V − μ
    if randomized is None:
        randomized = n_tokens * vectors.shape[1] ** 2 > EXACT_UP_TO
    if randomized:
        top, variances = leading_axes(vectors, mean, 2)
    else:
        centred = vectors - mean
        eigenvalues, eigenvectors = torch.linalg.eigh((centred.T @ centred).double())
        top, variances = eigenvectors[:, -2:].flip(-1).float(), eigenvalues[-2:].flip(0)
    top = top * torch.where(top.sum(0) < 0, -1.0, 1.0)  # an eigenvector's sign is arbitrary: fix it
    explained = (variances / total).tolist()
    return EmbeddingMap((vectors @ top - mean @ top).cpu().numpy(), (explained[0], explained[1]), randomized)


@torch.inference_mode()
def nearest_tokens(model: GPT, token: int, n_tokens: int, count: int = 10) -> list[tuple[int, float]]:
    """The `count` tokens whose embeddings point most nearly the way `token`'s does: (id, cosine)."""
    vectors = torch.nn.functional.normalize(model.transformer.wte.weight[:n_tokens].float(), dim=-1)
    similarity = vectors @ vectors[token]
    similarity[token] = -2.0  # not its own neighbour
    best = similarity.topk(min(count, n_tokens - 1))
    return list(zip(best.indices.tolist(), best.values.tolist()))
