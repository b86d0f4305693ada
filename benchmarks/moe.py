"""What a mixture of experts costs a training step on a CPU, against the dense model it grows from.

The classroom size of benchmarks/train.py (4 layers, 4 heads, 128 wide, context 128, batch 16,
vocab 512, SwiGLU, no biases), dense and with 4 or 8 experts of the same width, top 1 or 2:
forward with the loss (plus the load-balancing loss, weighted as the trainer does), backward,
on random tokens, fp32. Each model is warmed up, then timed in turns (dense, moe..., dense, ...)
--repeats times; tokens/s from each one's fastest round, and its step time over the dense
one's as the median of the per-round ratios (paired: a burst of load hits both alike).

An expert loop over the tokens that chose it (as transformers' Mixtral) does the work of k
MLPs a token in smaller matmuls: the ratio says how much that costs beyond the k MLPs' FLOPs.

Run from the repository root:  nice .venv/bin/python benchmarks/moe.py [--threads N] [--repeats N] [--steps N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # so `import lm` works when run as a script
from lm.model import GPT, GPTConfig  # noqa: E402
from lm.sizing import active_parameter_count, flops_per_token, parameter_count  # noqa: E402

SHAPE = dict(vocab_size=512, block_size=128, n_layer=4, n_head=4, n_embd=128, mlp="swiglu", bias=False)
VARIANTS = {"dense": {}, "4 experts, top 1": dict(n_experts=4, experts_top_k=1),
            "4 experts, top 2": dict(n_experts=4, experts_top_k=2), "8 experts, top 2": dict(n_experts=8, experts_top_k=2)}
BATCH = 16


def step(model: GPT, x: torch.Tensor) -> None:
    out = model(x, x)
    loss = out.loss if out.aux_loss is None else out.loss + model.config.moe_aux_weight * out.aux_loss
    loss.backward()
    model.zero_grad(set_to_none=True)


def timed(model: GPT, x: torch.Tensor, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step(model, x)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {name: GPT(GPTConfig(**SHAPE | switches)).train() for name, switches in VARIANTS.items()}
    x = torch.randint(SHAPE["vocab_size"], (BATCH, SHAPE["block_size"]))
    for model in models.values():
        timed(model, x, 2)  # warm up
    rounds = [{name: timed(model, x, args.steps) for name, model in models.items()} for _ in range(args.repeats)]
    tokens = BATCH * SHAPE["block_size"]
    print(f"{args.threads} thread(s), {args.repeats} rounds of {args.steps} steps, batch {BATCH} x {SHAPE['block_size']}")
    print(f"{'model':<18}{'parameters':>12}{'active':>10}{'FLOPs/token':>13}{'tokens/s':>10}{'step / dense':>14}")
    dense_flops = flops_per_token(models["dense"].config)
    for name, model in models.items():
        config = model.config
        ratio = statistics.median(r[name] / r["dense"] for r in rounds)
        best = min(r[name] for r in rounds)
        print(f"{name:<18}{parameter_count(config):>12,}{active_parameter_count(config):>10,}"
              f"{flops_per_token(config) / dense_flops:>12.2f}x{tokens / best:>10,.0f}{ratio:>13.2f}x")


if __name__ == "__main__":
    main()
