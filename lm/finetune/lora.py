"""LoRA (Hu et al. 2021): fine-tune a weight matrix W through a low-rank change.

A layer y = x·W becomes y = x·W + (x·A·B)·alpha/rank, with W frozen, A [in, rank] random and
B [rank, out] zero, so training starts exactly at the base model and learns only A and B:
rank·(in + out) numbers instead of in·out. After training, W + A·B·alpha/rank is an ordinary
matrix again (merge), or A and B are kept apart as a small adapter file.

The layers are swapped in from outside (module surgery), so the model's code stays GPT-2's.
In a mixture of experts (lm.moe) each expert is an MLP of its own: "mlp" adapts every expert's
two layers, each with its own A and B, and "mlp.c_fc" names that layer in every expert. The
router is left alone unless named (mlp.router): it is a small matrix whose every change moves
tokens between experts, and LoRA recipes for Mixtral adapt the experts and attention, not it."""

from __future__ import annotations

import math
import re

import torch
import torch.nn as nn

from lm.attention import Linear

TARGETS = ("attn", "mlp")  # every linear layer inside each block's attention, or inside its MLP (or experts)
EXPERT = re.compile(r"\.experts\.\d+(?=\.)")  # lm.moe: mlp.experts.3.c_fc is expert 3's mlp.c_fc


class LoRALinear(nn.Module):
    """A frozen linear layer (lm.attention.Linear, W [in, out], or nn.Linear, W [out, in]) plus
    its trainable low-rank update."""

    def __init__(self, base: nn.Module, rank: int, alpha: float):
        super().__init__()
        self.base, self.rank, self.alpha = base, rank, alpha
        self.transposed = isinstance(base, nn.Linear)  # nn.Linear stores W as [out, in]
        n_in, n_out = base.weight.shape[::-1] if self.transposed else base.weight.shape
        for p in base.parameters():
            p.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(n_in, rank, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(rank, n_out, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A.T, a=math.sqrt(5))  # as nn.Linear initialises a [rank, in] weight

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A @ self.lora_B) * self.scale

    def delta(self) -> torch.Tensor:
        """The update to the base weight, in the base weight's own layout."""
        delta = self.lora_A @ self.lora_B * self.scale
        return delta.T if self.transposed else delta


def _targeted(name: str, module: nn.Module, targets: tuple[str, ...]) -> bool:
    if not isinstance(module, (Linear, nn.Linear)) or ".h." not in f".{name}":
        return False  # only the blocks' layers: never the tied output head or a classifier
    name = EXPERT.sub("", name)
    parts = name.split(".")
    if parts[-1] == "router":  # a mixture of experts' router: only when a target names it
        return any(t.split(".")[-1] == "router" and name.endswith(t) for t in targets)
    return any(t in parts or name.endswith(t) for t in targets)


def check_targets(targets) -> tuple[str, ...]:
    """Targets as a tuple of names: attn, mlp, or a layer name such as attn.c_attn or mlp.c_fc."""
    targets = tuple(t.strip() for t in (targets.split(",") if isinstance(targets, str) else targets) if t.strip())
    if not targets:
        raise ValueError(f"LoRA needs at least one target: {', '.join(TARGETS)}, or a layer name such as attn.c_attn")
    return targets


def apply_lora(model: nn.Module, rank: int, alpha: float, targets=TARGETS) -> nn.Module:
    """Freeze every parameter of `model` and wrap the targeted linear layers in LoRALinear, in
    place; returns the model. Unfreeze anything else that should train (a new head) afterwards."""
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"LoRA rank must be a whole number of at least 1, not {rank!r}")
    if not alpha > 0:
        raise ValueError(f"LoRA alpha must be positive, not {alpha!r}")
    targets = check_targets(targets)
    chosen = [name for name, module in model.named_modules() if _targeted(name, module, targets)]
    if not chosen:
        raise ValueError(f"no linear layer of the model matches the LoRA targets {', '.join(targets)}")
    for p in model.parameters():
        p.requires_grad_(False)
    for name in chosen:
        parent, _, child = name.rpartition(".")
        holder = model.get_submodule(parent)
        setattr(holder, child, LoRALinear(getattr(holder, child), rank, alpha))
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for layer in lora_layers(model).values() for p in (layer.lora_A, layer.lora_B)]


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain layer back, in place: the model
    is an ordinary one again (same parameter names, same outputs). Returns it."""
    for name, layer in lora_layers(model).items():
        layer.base.weight += layer.delta()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer.base)
    return model


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter alone ({layer.lora_A, layer.lora_B}), to save apart from the base model."""
    return {f"{name}.{part}": getattr(layer, part).detach().cpu().contiguous()
            for name, layer in lora_layers(model).items() for part in ("lora_A", "lora_B")}


@torch.no_grad()
def load_adapter(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Put a saved adapter into a model that apply_lora wrapped the same way."""
    expected = adapter_state(model)
    if expected.keys() != tensors.keys():
        raise ValueError(f"the adapter does not fit this model: it has {len(tensors)} tensors, the model's LoRA layers "
                         f"need {len(expected)} ({sorted(expected.keys() ^ tensors.keys())[:2]} differ)")
    layers = lora_layers(model)
    for key, tensor in tensors.items():
        name, _, part = key.rpartition(".")
        target = getattr(layers[name], part)
        if target.shape != tensor.shape:
            raise ValueError(f"{key} has shape {tuple(tensor.shape)}; the model needs {tuple(target.shape)}")
        target.copy_(tensor)


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """(parameters that train, all parameters); a tied matrix counts once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
