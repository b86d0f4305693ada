"""What a fine-tune step costs next to a step that trains every weight, measured here.

A frozen weight needs no gradient of its own, yet the backward pass still runs through its
layer to reach the layers below that train (their inputs' gradient); below the lowest block that
trains it stops. LoRA adds its own small products and trains only them. How much that saves
depends on the model and the machine (a tiny model's step is mostly fixed overhead, which LoRA's
extra layers add to), so it is timed rather than assumed: the same model, stepped with every
weight training and prepared as the fine-tune will be, in turns, the fastest of each."""

from __future__ import annotations

import copy
import time
from typing import Callable

import torch

from lm.estimate import BUDGET_S, timing_threads
from lm.model import GPT, GPTConfig

ROUNDS = 3  # timed steps of each model, in turns, after one each to warm up (fewer when one alone overruns the budget)


def _step(model: GPT, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> float:
    started = time.perf_counter()
    model(x[:, :-1], x[:, 1:]).loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - started


def step_ratio(config: GPTConfig, prepare: Callable[[GPT], None], batch: int, length: int, device: str = "cpu",
               threads: int = 0, budget: float = BUDGET_S) -> float:
    """Seconds of a step of the model as `prepare` leaves it (LoRA applied, blocks frozen) over
    seconds of a step that trains every weight, both on `batch` sequences of `length` tokens
    (fewer sequences, then fewer rounds, when the budget would not hold the steps), on `threads` CPU threads."""
    from lm.finetune.config import FinetuneConfig
    from lm.trainer import make_optimizer  # the trainer imports much more than a timing needs

    with timing_threads(threads):  # the thread count is the whole process's: one timing at a time, with lm.estimate's
        torch.manual_seed(0)
        full = GPT(config)
        prepared = copy.deepcopy(full)
        prepare(prepared)
        settings = FinetuneConfig(source="-", lr=1e-4)
        models = [(m.to(device), make_optimizer(m, settings, device)) for m in (full, prepared)]
        x = torch.randint(0, config.vocab_size, (1, length + 1), device=device)
        first = sum(_step(m, opt, x) for m, opt in models)  # warms up, allocates the optimizer state
        rounds = max(1, min(ROUNDS, int(budget / (2 * max(first, 1e-6)))))  # a big model: one, the lock is shared
        sequences = max(1, min(batch, int(budget / (2 * rounds * max(first, 1e-6)))))
        x = torch.randint(0, config.vocab_size, (sequences, length + 1), device=device)
        best = [float("inf")] * 2
        for _ in range(rounds):
            best = [min(b, _step(m, opt, x)) for b, (m, opt) in zip(best, models)]
        return best[1] / best[0]
