"""LoRA (Hu et al. 2021): fine-tune a weight matrix W through a low-rank change.

A layer y = x·W becomes y = x·W + (x·A·B)·alpha/rank, with W frozen, A [in, rank] random and
B [rank, out] zero, so training starts exactly at the base model and learns only A and B:
rank·(in + out) numbers instead of in·out. After training, W + A·B·alpha/rank is an ordinary
matrix again (merge), or A and B are kept apart as a small adapter file.

The layers are swapped in from outside (module surgery), so the model's code stays GPT-2's.
In a mixture of experts (lm.moe) each expert is an MLP of its own: "mlp" adapts every expert's
two layers, each with its own A and B, "mlp.c_fc" names that layer in every expert and
"mlp.experts.0.c_fc" in expert 0 alone (to watch one expert specialize). The router is left
alone unless named (mlp.router): it is a small matrix whose every change moves tokens between
experts, and LoRA recipes for Mixtral adapt the experts and attention, not it. A target names
the layers whose module path holds it whole, so h.0.attn is block 0's attention."""

from __future__ import annotations

import math
import re

import torch
import torch.nn as nn

from lm.attention import Linear

TARGETS = ("attn", "mlp")  # every linear layer inside each block's attention, or inside its MLP (or experts)
EXPERT = re.compile(r"\.experts\.\d+(?=\.)")  # lm.moe: mlp.experts.3.c_fc is expert 3's mlp.c_fc
BLOCK = re.compile(r"^(.*\.)?h\.\d+\.")  # transformer.h.3.attn.c_attn is block 3's attn.c_attn


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


def _names(target: str, name: str) -> bool:
    """Whether the target's dotted parts run whole through the name: attn, mlp.c_fc, h.0.attn."""
    return f".{target}." in f".{name}."


def _targeted(name: str, target: str) -> bool:
    every = EXPERT.sub("", name)  # mlp.experts.3.c_fc is also mlp.c_fc: that layer in every expert
    if every.endswith(".router"):  # a mixture of experts' router: only when the target names it
        return target.rsplit(".", 1)[-1] == "router" and _names(target, every)
    return _names(target, name) or _names(target, every)


def kind(name: str) -> str:
    """transformer.h.3.mlp.experts.1.c_fc -> mlp.c_fc: the target naming that layer in every block (and expert)."""
    return BLOCK.sub("", EXPERT.sub("", name))


def check_targets(targets) -> tuple[str, ...]:
    """Targets as a tuple of names: attn, mlp, or a layer name such as attn.c_attn or mlp.c_fc."""
    targets = tuple(t.strip() for t in (targets.split(",") if isinstance(targets, str) else targets) if t.strip())
    if not targets:
        raise ValueError(f"LoRA needs at least one target: {', '.join(TARGETS)}, or a layer name such as attn.c_attn")
    return targets


def adaptable_layers(model: nn.Module) -> list[str]:
    """The linear layers inside the blocks: never the tied output head or a classifier."""
    return [name for name, module in model.named_modules()
            if isinstance(module, (Linear, nn.Linear)) and ".h." in f".{name}"]


def layer_names(layers: list[str]) -> str:
    """What a target may name in a model with these layers, for a message."""
    kinds = sorted({kind(name) for name in layers})
    experts = {found.group() for name in layers if (found := EXPERT.search(name))}
    own = sorted({EXPERT.sub(".experts.N", BLOCK.sub("", name)) for name in layers if EXPERT.search(name)})
    return (f"{', '.join(TARGETS)}, or a layer: {', '.join(kinds)}"
            + (f"; or one expert's: {', '.join(own)} (N from 0 to {len(experts) - 1})" if own else ""))


def targeted_layers(model: nn.Module, targets) -> list[str]:
    """The layers the targets name, in the model's order. Each target must name one at least: a
    misspelt one would otherwise quietly train less than asked."""
    targets, layers = check_targets(targets), adaptable_layers(model)
    for target in targets:
        if not any(_targeted(name, target) for name in layers):
            raise ValueError(f"no linear layer of the model is named by the LoRA target {target!r}: "
                             f"name {layer_names(layers)}")
    return [name for name in layers if any(_targeted(name, target) for target in targets)]


def apply_lora(model: nn.Module, rank: int, alpha: float, targets=TARGETS) -> nn.Module:
    """Freeze every parameter of `model` and wrap the targeted linear layers in LoRALinear, in
    place; returns the model. Unfreeze anything else that should train (a new head) afterwards."""
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"LoRA rank must be a whole number of at least 1, not {rank!r}")
    if not alpha > 0:
        raise ValueError(f"LoRA alpha must be positive, not {alpha!r}")
    chosen = targeted_layers(model, targets)
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


# --- resuming: the layers a run's saved adapter holds --------------------------------------

def adapted_layers(tensors) -> set[str]:
    """The layers an adapter holds, from its tensors' names (adapter.safetensors', or the trainable
    ones state.pt keeps: a classifier's head there is no LoRA layer)."""
    return {key.removesuffix(".lora_A") for key in tensors if key.endswith(".lora_A")}


def _naming(model: nn.Module, layers: set[str], base) -> str | None:
    """`base` targets with the kinds of layer they miss, if together they name exactly `layers`."""
    named = set(targeted_layers(model, base)) if base else set()
    targets = (*(check_targets(base) if base else ()), *sorted({kind(name) for name in layers - named}))
    return ",".join(targets) if set(targeted_layers(model, targets)) == layers else None


def resume_targets(model: nn.Module, saved, targets: str, recorded: str, rank: int) -> str:
    """The targets a resumed run adapts `model` (not yet wrapped) with: exactly the layers of its
    saved adapter (`saved`: its tensors by name), so that a resume never changes what trains.
    `targets` if they name them; else, when `targets` are the run's `recorded` ones, those with
    what they miss added: a run made before `mlp` stopped adapting a mixture's routers recorded
    attn,mlp and saved router adapters, and resumes with attn,mlp,mlp.router. Other targets
    than the recorded ones, or another rank than the adapter's, are refused, naming the ones to pass."""
    ranks = {tensor.shape[1] for key, tensor in saved.items() if key.endswith(".lora_A")}  # A is [in, rank]
    if ranks and ranks != {rank}:
        raise ValueError(f"the run's saved LoRA adapter has rank {min(ranks)}, not {rank}: a resume trains what the "
                         f"run trained, so pass --lora-rank {min(ranks)} or leave it out")
    layers = adapted_layers(saved)
    if not layers or set(targeted_layers(model, targets)) == layers:
        return targets  # nothing to go by (the loop refuses a state without its adapter), or they agree
    whole = [target for target in TARGETS if set(targeted_layers(model, target)) <= layers]  # attn, mlp if all there
    fit = (_naming(model, layers, recorded) or _naming(model, layers, whole)
           or ",".join(sorted(re.sub(r"^(.*\.)?(?=h\.\d+\.)", "", name) for name in layers)))  # h.0.attn.c_attn...
    if check_targets(targets) == check_targets(recorded):
        return fit
    raise ValueError(f"the run's saved LoRA adapter is on --lora-targets {fit}, not {targets}: a resume trains what "
                     f"the run trained, so pass --lora-targets {fit} or leave it out")
