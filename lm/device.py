"""Which device training and generation run on (CUDA, then Apple MPS, then the CPU),
and in which number format a device trains fastest."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def default_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_device(name: str) -> str:
    """The device a setting names: "auto" is the best this machine has, anything else itself."""
    return default_device() if name == "auto" else name


def available_devices() -> list[str]:
    devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices + ["cpu"]


def use_threads_for_server() -> int:
    """Set PyTorch's threads for a process that serves the app, and return how many: one core
    is left to the server itself and to runs training in the background. On a 2-core machine
    two PyTorch threads made the pages several times slower, not faster."""
    threads = max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(threads)
    return threads


def describe_device(device: str) -> str:
    """A line a class can read: which chip, and how much memory or how many cores."""
    kind = torch.device(device)
    if kind.type == "cuda":
        props = torch.cuda.get_device_properties(kind.index or 0)
        return f"CUDA GPU: {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    if kind.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({os.cpu_count()} cores)"


@dataclass(frozen=True)
class Precision:
    """How training computes: under autocast to `dtype` (None: plain fp32), with `scaled`
    gradients (fp16's small range would round small gradients to zero without a scaler)."""

    dtype: torch.dtype | None = None
    scaled: bool = False


def choose_precision(choice: str, device_type: str, bf16_supported: bool = False) -> Precision:
    """auto: bf16 on a CUDA GPU that has it (fp32's range, half its bytes: no scaling
    needed), fp16 with a gradient scaler on an older one, fp32 elsewhere (a CPU gains little,
    and Apple MPS trains in fp32 here). The weights and the optimizer stay fp32 throughout."""
    if choice not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {choice!r}")
    if choice == "auto":
        choice = ("bf16" if bf16_supported else "fp16") if device_type == "cuda" else "fp32"
    if choice == "fp32":
        return Precision()
    if choice == "fp16":
        if device_type != "cuda":
            raise ValueError(f"fp16 training needs a CUDA GPU, not {device_type}: choose fp32 or auto")
        return Precision(torch.float16, scaled=True)
    if device_type == "cpu" or (device_type == "cuda" and bf16_supported):
        return Precision(torch.bfloat16)
    if device_type == "cuda":
        raise ValueError("this GPU has no bf16: choose fp16, fp32 or auto")
    raise ValueError(f"bf16 training needs a CUDA GPU or the CPU, not {device_type}: choose fp32 or auto")


def device_precision(choice: str, device: str) -> Precision:
    kind = torch.device(device).type
    return choose_precision(choice, kind, kind == "cuda" and torch.cuda.is_bf16_supported())


def to_device(tensor: torch.Tensor, device: str) -> torch.Tensor:
    """Onto the device; to a CUDA GPU from page-locked memory and without waiting, so the copy
    overlaps the GPU's work on the previous batch."""
    if device.startswith("cuda"):
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def max_processes(device: str) -> int:
    """How many training processes a device takes: one per CUDA GPU, one per CPU core
    (they share the machine: a demonstration more than a speed-up), one on Apple MPS."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.device_count()
    return (os.cpu_count() or 1) if kind == "cpu" else 1
