"""The token embedding as a map: each token's vector projected onto the plane that keeps the
most of their spread (PCA), and each token's nearest neighbours by cosine similarity. Tokens
used alike end up with similar vectors, so neighbours often share a meaning or a form."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lm.model import GPT


@dataclass(frozen=True)
class EmbeddingMap:
    points: np.ndarray  # [n_tokens, 2]: each token's embedding on the first two principal axes
    explained: tuple[float, float]  # the share of the embeddings' variance each axis keeps


@torch.inference_mode()
def embedding_map(model: GPT, n_tokens: int) -> EmbeddingMap:
    """PCA of the first `n_tokens` rows of the token embedding (a padded vocabulary's extra
    rows are no token): exact and deterministic, no random projection."""
    vectors = model.transformer.wte.weight[:n_tokens].float()
    centred = vectors - vectors.mean(0)
    # the principal axes are the eigenvectors of the n_embd × n_embd covariance: cheap for any vocabulary
    variances, axes = torch.linalg.eigh((centred.T @ centred).double())
    axes = axes.float()
    top = axes[:, -2:].flip(-1)
    top = top * torch.where(top.sum(0) < 0, -1.0, 1.0)  # an eigenvector's sign is arbitrary: fix it
    explained = (variances[-2:].flip(0) / variances.sum()).tolist()
    return EmbeddingMap((centred @ top).cpu().numpy(), (explained[0], explained[1]))


@torch.inference_mode()
def nearest_tokens(model: GPT, token: int, n_tokens: int, count: int = 10) -> list[tuple[int, float]]:
    """The `count` tokens whose embeddings point most nearly the way `token`'s does: (id, cosine)."""
    vectors = torch.nn.functional.normalize(model.transformer.wte.weight[:n_tokens].float(), dim=-1)
    similarity = vectors @ vectors[token]
    similarity[token] = -2.0  # not its own neighbour
    best = similarity.topk(min(count, n_tokens - 1))
    return list(zip(best.indices.tolist(), best.values.tolist()))
