"""Which device training and generation run on: CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import os

import torch


def default_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def available_devices() -> list[str]:
    devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices + ["cpu"]


def describe_device(device: str) -> str:
    """A line a class can read: which chip, and how much memory or how many cores."""
    kind = torch.device(device)
    if kind.type == "cuda":
        props = torch.cuda.get_device_properties(kind.index or 0)
        return f"CUDA GPU: {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    if kind.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads for PyTorch)"
