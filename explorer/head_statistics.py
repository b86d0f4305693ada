"""Per-head statistics of attention: how spread out each head is, how much it gives the
previous token, the first token and itself, and which heads score highest."""

from __future__ import annotations

import numpy as np


def head_statistics(weights: np.ndarray) -> list[dict]:
    """One row per head of `weights` [layers, heads, T, T], T ≥ 2. Every figure is an
    average over the query positions i = 1 … T−1 (position 0 can only look at itself, so
    it says nothing about the head), of, for query i:

    - entropy: −Σ_j w_ij·log2 w_ij in bits, 0 when the query looks at one key only,
      log2(i+1) when it spreads evenly over all i+1 keys it may see;
    - previous token: w_i,i−1;  first token: w_i,0;  itself: w_i,i
      (for query 1 the previous token is the first token: it counts for both).

    "mostly" names whichever of those three takes at least half of the weight on average,
    else "other"."""
    L, H, T, _ = weights.shape
    if T < 2:
        raise ValueError("head statistics need at least two tokens")
    rows = weights[..., 1:, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(rows > 0, rows * np.log2(rows), 0.0).sum(-1).mean(-1)
    patterns = {
        "previous token": np.diagonal(weights, offset=-1, axis1=-2, axis2=-1).mean(-1),
        "first token": rows[..., 0].mean(-1),
        "itself": np.diagonal(weights, axis1=-2, axis2=-1)[..., 1:].mean(-1),
    }
    table = []
    for layer in range(L):
        for head in range(H):
            shares = {name: float(values[layer, head]) for name, values in patterns.items()}
            top = max(shares, key=shares.get)
            table.append(
                {"layer": layer, "head": head, "entropy (bits)": float(entropy[layer, head])}
                | shares
                | {"mostly": top if shares[top] >= 0.5 else "other"}
            )
    return table


def uniform_entropy(n_tokens: int) -> float:
    """The entropy head_statistics reports for a head that spreads evenly: a yardstick."""
    return float(np.mean(np.log2(np.arange(2, n_tokens + 1)))) if n_tokens > 1 else 0.0


def top_heads(scores: np.ndarray, count: int) -> list[tuple[int, int, float]]:
    """(layer, head, score) of the `count` highest-scoring heads of [layers, heads] scores."""
    order = np.argsort(-scores, axis=None, kind="stable")[:count]
    return [(int(i) // scores.shape[1], int(i) % scores.shape[1], float(scores.flat[i])) for i in order]
