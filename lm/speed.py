"""How fast a device trains, measured: FLOP/s on a few training steps of a small reference
GPT, to turn a config's FLOPs per step into a rough time per step before a run starts."""

from __future__ import annotations

import time

import torch

from lm.model import GPT, GPTConfig
from lm.sizing import flops_per_token


def threads_used(threads: int) -> int:
    """The CPU threads PyTorch computes with when a run asks for `threads` (0: its default)."""
    return threads or torch.get_num_threads()


def measure_training_flops(device: str, threads: int = 0, steps: int = 5) -> float:
    """FLOP/s this device reaches on a training step of a small reference GPT (4 layers,
    128 wide, context 128, batch 8). The fastest of a few steps (other programs only ever
    slow a step down), with the CPU threads the run will use (0: PyTorch's default): on a
    busy CPU, more threads than free cores can make a step many times slower."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _fastest_step_flops(device, steps)
    finally:
        torch.set_num_threads(previous)


def _fastest_step_flops(device: str, steps: int) -> float:
    config = GPTConfig(vocab_size=512, block_size=128, n_layer=4, n_head=4, n_embd=128)
    model = GPT(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters())
    batch = torch.randint(0, config.vocab_size, (8, config.block_size), device=device)

    def step() -> float:
        started = time.perf_counter()
        model(batch, batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    step()  # the first step allocates and warms up
    return flops_per_token(config) * batch.numel() / min(step() for _ in range(steps))
