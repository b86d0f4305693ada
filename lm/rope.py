"""Rotary position embedding (RoPE, Su et al. 2021), as Llama, Qwen and Pythia use it.

Instead of adding a position vector to each token, RoPE turns each query and key by an
angle proportional to its position: dimensions i and i + d/2 form a pair (the "rotate
half" layout of Hugging Face's Llama and GPT-NeoX) that turns at its own speed,
base^(-2i/d) radians per position. A query at position m and a key at n are then scored
by q·R(n − m)·k: the score depends on how far apart they are, not where they are.
With a partial rotary fraction (Pythia) only the first dimensions of each head turn.
"""

from __future__ import annotations

from functools import lru_cache

import torch


def speeds(dims: int, base: float, device=None) -> torch.Tensor:
    """[dims / 2] radians per position that each pair turns, fastest first: base^(-2i/dims)."""
    return 1.0 / (base ** (torch.arange(0, dims, 2, dtype=torch.int64, device=device).float() / dims))


def rotation(positions: torch.Tensor, dims: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [T, dims] of each position's angles, in float32 whatever the model's dtype
    (angles of late positions need the precision); the same numbers as transformers computes."""
    angles = positions.float()[:, None] * speeds(dims, base, positions.device)[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


KEPT_MAX_NUMBERS = 1 << 18  # per table (1 MB in fp32); a longer pass remakes its angles rather than hold them for good


def rotation_at(start: int, length: int, dims: int, base: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """rotation() of positions start to start + length - 1. Outside autograd (the app's passes,
    generation) the same angles serve every layer of a pass, so they are made once and kept
    (remade in each layer, they cost half as much again as turning the queries and keys);
    under autograd they are made afresh, as nothing made in inference mode may enter a
    backward pass."""
    if torch.is_grad_enabled() or length * dims > KEPT_MAX_NUMBERS:
        return _rotation_from(start, length, dims, base, device)
    return _kept_rotation(start, length, dims, base, device)


def _rotation_from(start: int, length: int, dims: int, base: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return rotation(torch.arange(start, start + length, device=device), dims, base)


# a pass's few (dims, base) pairs; generation moves start by one a step
_kept_rotation = lru_cache(maxsize=16)(_rotation_from)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [..., T, head size] with its first cos.size(-1) dimensions turned; the rest pass as they are."""
    dims = cos.size(-1)
    turned, rest = x[..., :dims], x[..., dims:]
    first, second = turned.chunk(2, dim=-1)
    rotated = turned * cos.to(x.dtype) + torch.cat((-second, first), dim=-1) * sin.to(x.dtype)
    return torch.cat((rotated, rest), dim=-1) if rest.size(-1) else rotated


def unrotate(x: torch.Tensor, positions: torch.Tensor, dims: int, base: float) -> torch.Tensor:
    """x [..., T, head size] as it was before `rotate` turned it at `positions`: the same
    angles backwards (a rotation's inverse), to show queries and keys before RoPE."""
    cos, sin = rotation(positions, dims, base)
    return rotate(x, cos, -sin)
