"""MLP neurons: which fire most on a token, and where else in a corpus each fires most.

A neuron is one of an MLP's hidden units (after its activation, GELU in GPT-2); it "fires" when its value is large.
Indexing a corpus sample once per model (each neuron's few strongest moments) makes any
neuron's examples a look-up, so choosing another token costs one forward pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from lm.model import GPT
from lm.trace import neuron_activations, verify_walk, walk

EXAMPLES = 3  # the strongest moments kept per neuron


@torch.inference_mode()
def activations(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """[layers, batch, T, the MLP's width]: every neuron at every position of a batch of windows
    (the walk checked against the model's own forward pass, as lm.trace.trace does)."""
    _, layers = walk(model, idx)
    verify_walk(model, idx, layers)
    return torch.stack([neuron_activations(block, parts.mlp_in, parts.mlp_out)
                        for block, parts in zip(model.transformer.h, layers)])


def top_neurons(model: GPT, ids: list[int], position: int, count: int) -> list[tuple[int, int, float]]:
    """The `count` neurons firing most at `position` of the text, over every layer: (layer, neuron, value).
    Only the ids up to `position` are run: later tokens cannot change it (causal attention)."""
    at = activations(model, torch.tensor([ids[: position + 1]], device=model.lm_head.weight.device))[:, 0, position]
    best = at.flatten().topk(min(count, at.numel()))
    width = at.shape[1]
    return [(i // width, i % width, v) for i, v in zip(best.indices.tolist(), best.values.tolist())]


def windows(ids: list[int], length: int, count: int) -> list[list[int]]:
    """Up to `count` windows of `length` tokens spread evenly over `ids` (fewer when it is short)."""
    if len(ids) <= length:
        return [list(ids)] if ids else []
    starts = np.linspace(0, len(ids) - length, num=min(count, len(ids) - length + 1)).round().astype(int)
    return [list(ids[s : s + length]) for s in dict.fromkeys(starts.tolist())]


@dataclass(frozen=True)
class NeuronIndex:
    """Each neuron's strongest moments in a corpus sample: value, and where (window, position)."""

    windows: list[list[int]]
    values: np.ndarray  # [layers, neurons, EXAMPLES]
    window: np.ndarray  # [layers, neurons, EXAMPLES]
    position: np.ndarray  # [layers, neurons, EXAMPLES]

    def examples(self, layer: int, neuron: int) -> list[tuple[float, int, int]]:
        """(value, window, position) for one neuron, strongest first."""
        return [(float(v), int(w), int(p)) for v, w, p in
                zip(self.values[layer, neuron], self.window[layer, neuron], self.position[layer, neuron])]


def index_neurons(model: GPT, sample: list[list[int]], batch: int = 8,
                  progress: Callable[[int], None] | None = None) -> NeuronIndex:
    """Run every window of the sample (equal lengths) and keep each neuron's EXAMPLES strongest
    moments, merged batch by batch (all activations at once would be [layers, windows, T, width]);
    `progress(windows done)` after each batch."""
    if not sample:
        raise ValueError("the corpus sample is empty")
    device = model.lm_head.weight.device
    values = where = None
    for first in range(0, len(sample), batch):
        found = activations(model, torch.tensor(sample[first : first + batch], device=device))  # [L, W, T, F]
        L, W, T, F = found.shape
        flat = found.permute(0, 3, 1, 2).reshape(L, F, W * T)
        here = torch.arange(first * T, (first + W) * T, device=device).expand(L, F, -1)  # window × T + position
        if values is not None:
            flat, here = torch.cat([values, flat], -1), torch.cat([where, here], -1)
        best = flat.topk(min(EXAMPLES, flat.size(-1)), dim=-1)
        values, where = best.values, here.gather(-1, best.indices)
        if progress is not None:
            progress(first + W)
    T = len(sample[0])
    where = where.cpu().numpy()
    return NeuronIndex(sample, values.float().cpu().numpy(), where // T, where % T)
