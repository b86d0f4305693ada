"""MLP neurons: which fire most on a token, and where else in a corpus each fires most.

A neuron is one of an MLP's hidden units (after its activation, GELU in GPT-2); it "fires" when its value is large.
Indexing a corpus sample once per model (each neuron's few strongest moments) makes any
neuron's examples a look-up, so choosing another token costs one forward pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lm.attention import Probe
from lm.model import GPT
from lm.trace import LAYOUT, check_close, check_layout, embed, neuron_activations, step

EXAMPLES = 3  # the strongest moments kept per neuron


@torch.inference_mode()
def activations(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """[layers, batch, T, the MLP's width]: every neuron at every position of a batch of windows
    (the walk checked against the model's own forward pass, as lm.trace.trace does)."""
    check_layout(model)
    x, found = embed(model, idx), []
    for block in model.transformer.h:
        parts = step(block, x)
        found.append(neuron_activations(block, parts.mlp_in, parts.mlp_out))
        x = parts.resid_post
    check_close(x, model.hidden(idx, Probe(residuals=True))[2][-1], LAYOUT.format(what="the MLPs' inputs"))
    return torch.stack(found)


def top_neurons(model: GPT, ids: list[int], position: int, count: int) -> list[tuple[int, int, float]]:
    """The `count` neurons firing most at `position` of the text, over every layer: (layer, neuron, value)."""
    at = activations(model, torch.tensor([ids], device=model.lm_head.weight.device))[:, 0, position]  # [L, F]
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


def index_neurons(model: GPT, sample: list[list[int]], batch: int = 8) -> NeuronIndex:
    """Run every window of the sample (equal lengths) and keep each neuron's EXAMPLES strongest moments."""
    if not sample:
        raise ValueError("the corpus sample is empty")
    device = model.lm_head.weight.device
    found = torch.cat([activations(model, torch.tensor(sample[i : i + batch], device=device))
                       for i in range(0, len(sample), batch)], dim=1)  # [L, windows, T, F]
    L, W, T, F = found.shape
    best = found.permute(0, 3, 1, 2).reshape(L, F, W * T).topk(min(EXAMPLES, W * T), dim=-1)
    where = best.indices.cpu().numpy()
    return NeuronIndex(sample, best.values.float().cpu().numpy(), where // T, where % T)
