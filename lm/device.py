"""Which device training and generation run on (CUDA, then Apple MPS, then the CPU),
and in which number format a device trains fastest."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

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


# The CPU instructions that multiply bf16 natively (x86: AVX512-BF16, or AMX's tiles). Without
# them PyTorch converts bf16 to fp32 and back around every operation, slower than plain fp32.
CPU_BF16_FEATURES = {"avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16"}
CPU_BF16_ENV = "LM_CPU_BF16"  # "0": auto keeps fp32 on every CPU (runs then compare exactly across machines)


def cpu_bf16_feature() -> str | None:
    """The name of this CPU's native bf16 instructions, or None: read from PyTorch's own
    CPU capability report (cpuinfo, queried once and cached by torch)."""
    capabilities = torch.cpu.get_capabilities()
    return next((name for key, name in CPU_BF16_FEATURES.items() if capabilities.get(key)), None)


@dataclass(frozen=True)
class Precision:
    """How training computes: under autocast to `dtype` (None: plain fp32), with `scaled`
    gradients (fp16's small range would round small gradients to zero without a scaler).
    `why` says, for the Train page, why this precision was chosen (not part of equality)."""

    dtype: torch.dtype | None = None
    scaled: bool = False
    why: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def describe(self) -> str:
        """One line for a reader: the format, and why it was chosen."""
        return f"{self.name}: {self.why}" if self.why else self.name


MIXED = "matrix multiplies in {0}, while the weights, the loss and the optimizer's state stay fp32"


def choose_precision(choice: str, device_type: str, bf16_supported: bool = False, cpu_feature: str | None = None) -> Precision:
    """auto: bf16 on a CUDA GPU that has it (fp32's range, half its bytes: no scaling
    needed), fp16 with a gradient scaler on an older one; bf16 on a CPU with native bf16
    instructions (`bf16_supported`, named by `cpu_feature`), where a bf16 matrix multiply runs
    about twice as fast as fp32 (benchmarks/train.py); fp32 elsewhere (Apple MPS trains in fp32
    here, and a CPU without those instructions only emulates bf16, more slowly than fp32).
    The weights and the optimizer stay fp32 throughout."""
    if choice not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {choice!r}")
    chosen = "as chosen"
    if choice == "auto":
        if device_type == "cuda":
            choice = "bf16" if bf16_supported else "fp16"
            chosen = "auto: this GPU has bf16" if bf16_supported else "auto: this GPU has no bf16"
        elif device_type == "cpu" and bf16_supported:
            choice, chosen = "bf16", f"auto: this CPU multiplies bf16 natively ({cpu_feature or 'bf16 instructions'})"
        else:
            choice = "fp32"
            chosen = ("auto: this CPU has no native bf16 instructions (AVX512-BF16 or AMX), so bf16 would be slower"
                      if device_type == "cpu" else f"auto: {device_type} trains in fp32 here")
    if choice == "fp32":
        return Precision(why=f"{chosen}; every number computed in fp32")
    if choice == "fp16":
        if device_type != "cuda":
            raise ValueError(f"fp16 training needs a CUDA GPU, not {device_type}: choose fp32 or auto")
        return Precision(torch.float16, scaled=True, why=f"{chosen}; {MIXED.format('fp16')}, gradients scaled")
    if device_type == "cpu" and not bf16_supported:
        chosen += " (this CPU has no native bf16 instructions: expect it slower than fp32)"
    if device_type == "cpu" or (device_type == "cuda" and bf16_supported):
        return Precision(torch.bfloat16, why=f"{chosen}; {MIXED.format('bf16')}")
    if device_type == "cuda":
        raise ValueError("this GPU has no bf16: choose fp16, fp32 or auto")
    raise ValueError(f"bf16 training needs a CUDA GPU or the CPU, not {device_type}: choose fp32 or auto")


def device_precision(choice: str, device: str) -> Precision:
    """The precision a run with this choice trains in on this device, and why (Precision.describe)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return choose_precision(choice, kind, torch.cuda.is_bf16_supported())
    if kind == "cpu" and choice == "auto" and os.environ.get(CPU_BF16_ENV) == "0":
        return Precision(why=f"auto, with {CPU_BF16_ENV}=0: fp32 on every CPU; every number computed in fp32")
    feature = cpu_bf16_feature() if kind == "cpu" else None
    return choose_precision(choice, kind, feature is not None, feature)


WRITTEN_OUT_MAX_SCORES = 256 * 256  # query x key positions per head


def attention_written_out(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether attention in bf16 on a CPU is faster written out (QKᵀ, softmax, @V) than in
    PyTorch's fused kernel: its CPU backward in bf16 is 2-2.5x slower than the written-out
    form at the classroom and GPT-2-tiny shapes (contexts 128 and 256), which makes a bf16
    training step slower than fp32. Longer contexts keep the fused kernel, whose memory does
    not grow with the square of the context."""
    return q.device.type == "cpu" and q.dtype == torch.bfloat16 and q.size(-2) * k.size(-2) <= WRITTEN_OUT_MAX_SCORES


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
