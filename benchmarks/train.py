"""Benchmark of training throughput (lm.trainer's step on lm.GPT) against Hugging Face transformers' GPT-2, on CPU.

Prints figures, checks nothing but speed goals (it is not a test). Two sizes:
  A: 4 layers, 4 heads, 128 wide, context 128, batch 16, vocab 512;
  B: 6 layers, 6 heads, 384 wide, context 256, batch 8, vocab 50,304;
both with biases (as GPT-2), dropout 0, fp32, on random token ids held in memory.

  ours: `Trainer._train_step` itself, the loop `python -m lm train` runs (learning
        rate set, random_batch, forward with the loss, backward, clip_grad_norm_,
        AdamW from make_optimizer, zero_grad), on a Trainer given the model and the
        in-memory ids instead of a run folder;
  HF:   `GPT2LMHeadModel` of the same size (n_positions = context, attention
        "sdpa", dropouts 0, use_cache off) with our initial weights copied in
        (same names and [in, out] layout as its Conv1D), behind an adapter
        that computes the loss as ours does (mean cross-entropy over all positions
        against the inputs shifted by one), run through the very same
        `Trainer._train_step`: same optimizer groups and settings, clipping, batch.

Both see the same batches, so their first losses must agree (printed: parity).
Each is warmed up (--warmup steps), then timed over --steps steps in turns (ours,
HF, ours, HF, ...) --repeats times, so a change in the machine's load hits both
alike; the fastest round is kept. Achieved FLOP/s = tokens/s x
lm.sizing.flops_per_token(config, training=True); its share is of this machine's
fp32 matmul peak, measured in the same run before and after the training runs
(the best square torch.mm of n = 2048, 3072, 4096).

Goals: ours faster than HF on A and on B; >= 50% of the matmul peak on A and >= 66% on B.

Threads: torch's default is one per core. On a machine shared with other work,
two threads that must meet at every operator lose far more than they gain (on
2 busy cores, size A ran 2-7x slower than on one thread): compare --threads 1.

Run from the repository root:  .venv/bin/python benchmarks/train.py [--repeats N] [--steps N] [--threads N] [--profile]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # so `import lm` works when run as `python benchmarks/train.py`

from lm.device import Precision  # noqa: E402
from lm.distributed import World  # noqa: E402
from lm.model import GPT  # noqa: E402
from lm.sizing import flops_per_token, parameter_count  # noqa: E402
from lm.trainer import TrainConfig, Trainer, make_optimizer  # noqa: E402
from common import transformers_gpt2  # noqa: E402 (benchmarks/ is on sys.path as the script folder)

SEED = 1337
DATA_TOKENS = 200_000  # random ids drawn once per size; batches are random windows of them
PEAK_SIZES = (2048, 3072, 4096)
PEAK_GOALS = {"A": 0.50, "B": 0.66}


@dataclass(frozen=True)
class Size:
    name: str
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch_size: int
    vocab_size: int


SIZES = (Size("A", 4, 4, 128, 128, 16, 512), Size("B", 6, 6, 384, 256, 8, 50_304))


def matmul_peak(repeats: int) -> tuple[float, int]:
    """Best fp32 GFLOP/s of square torch.mm over PEAK_SIZES (2 n^3 FLOPs each), and the n that gave it."""
    best = (0.0, 0)
    for n in PEAK_SIZES:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up
        for _ in range(max(3, repeats)):
            start = time.perf_counter()
            torch.mm(a, b)
            best = max(best, (2 * n**3 / (time.perf_counter() - start) / 1e9, n))
    return best


def train_config(size: Size) -> TrainConfig:
    return TrainConfig(n_layer=size.n_layer, n_head=size.n_head, n_embd=size.n_embd, block_size=size.block_size,
                       batch_size=size.batch_size, dropout=0.0, bias=True, max_steps=100_000, device="cpu", seed=SEED)


def shell_trainer(model: torch.nn.Module, cfg: TrainConfig, ids: np.ndarray) -> Trainer:
    """A Trainer around `model` and in-memory token ids, without a run folder or a tokenizer,
    so that its own _train_step is what gets timed."""
    trainer = Trainer.__new__(Trainer)  # __init__ would read a corpus and write a run folder
    trainer.cfg, trainer.model, trainer.device = cfg, model, "cpu"
    trainer.world, trainer.precision, trainer.signalled, trainer.stop_requested = World(), Precision(), False, False
    trainer.optimizer = make_optimizer(model, cfg, "cpu")
    trainer.train_ids, trainer.batches, trainer.step = ids, torch.Generator().manual_seed(SEED), 0
    trainer.task_data = None  # a corpus's token ids, not a synthetic task's examples
    trainer._build_engine()  # one process, fp32, not compiled: the model itself
    return trainer


class HFAdapter(torch.nn.Module):
    """Makes GPT2LMHeadModel answer like lm.GPT, model(idx, targets).loss, with the same loss."""

    def __init__(self, hf: torch.nn.Module):
        super().__init__()
        self.hf = hf

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> SimpleNamespace:
        logits = self.hf(input_ids=idx, use_cache=False).logits
        return SimpleNamespace(logits=logits, loss=F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1)))


def timed_steps(trainer: Trainer, steps: int) -> float:
    """Seconds for `steps` calls of the real training step (the step counter moves on as in train())."""
    start = time.perf_counter()
    for _ in range(steps):
        trainer._train_step()
        trainer.step += 1
    return time.perf_counter() - start


def bench_size(size: Size, args) -> dict:
    cfg = train_config(size)
    ids = np.random.default_rng(SEED).integers(0, size.vocab_size, DATA_TOKENS).astype(np.uint16)
    torch.manual_seed(SEED)
    ours = GPT(cfg.model_config(size.vocab_size))
    hf = transformers_gpt2(ours)
    attn = hf.config._attn_implementation
    trainers = {"ours": shell_trainer(ours, cfg, ids), "HF": shell_trainer(HFAdapter(hf), cfg, ids)}
    hf_params = sum(p.numel() for p in hf.parameters())

    # Parity: the same weights and the same batch give the same first loss and gradient norm.
    first = {name: t._train_step() for name, t in trainers.items()}
    for t in trainers.values():
        t.step += 1
    loss_diff = abs(first["ours"][1] - first["HF"][1])
    norm_diff = abs(first["ours"][2] - first["HF"][2]) / first["ours"][2]

    for t in trainers.values():
        timed_steps(t, args.warmup)
    best = dict.fromkeys(trainers, float("inf"))
    for _ in range(args.repeats):
        for name, t in trainers.items():
            best[name] = min(best[name], timed_steps(t, args.steps))
    tokens = args.steps * size.batch_size * size.block_size
    flops = flops_per_token(ours.config, training=True)
    result = dict(size=size, params=parameter_count(ours.config), hf_params=hf_params, attn=attn, flops=flops,
                  loss=first["ours"][1], loss_diff=loss_diff, norm_diff=norm_diff,
                  ours=tokens / best["ours"], hf=tokens / best["HF"])
    if args.profile:
        profile_step(trainers["ours"], size)
    return result


def profile_step(trainer, size: Size) -> None:
    """Where a step of ours spends its time: torch.profiler over 3 steps, top operators by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        timed_steps(trainer, 3)
    print(f"\nprofile of ours, size {size.name}, 3 steps:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=48))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per model; the best is kept")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first, per model")
    parser.add_argument("--sizes", default="AB", help="which sizes to run: A, B or AB (default AB)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own choice)")
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's table for our step")
    args = parser.parse_args()
    if args.repeats < 1 or args.steps < 1 or args.warmup < 0:
        sys.exit("error: --repeats and --steps must be at least 1, --warmup at least 0")
    sizes = [s for s in SIZES if s.name in args.sizes.upper()]
    if not sizes:
        sys.exit("error: --sizes takes A, B or AB")
    try:
        import transformers
    except ImportError:
        sys.exit("error: transformers is not installed (pip install -r requirements-dev.txt)")
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    peak_before = matmul_peak(args.repeats)
    results = [bench_size(size, args) for size in sizes]
    peak_after = matmul_peak(args.repeats)  # the machine is shared: keep the better of before and after
    load_after = os.getloadavg()
    peak, peak_n = max(peak_before, peak_after)

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, CPU, fp32; "
          f"torch.get_num_threads() = {torch.get_num_threads()}, os.cpu_count() = {os.cpu_count()}")
    print(f"load average (1, 5, 15 min): before {', '.join(f'{x:.2f}' for x in load_before)}; "
          f"after {', '.join(f'{x:.2f}' for x in load_after)}")
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s (best square torch.mm, n = {peak_n}; measured before the "
          f"training runs {peak_before[0]:.1f}, after {peak_after[0]:.1f})")
    print(f"timing: {args.warmup} warm-up steps, then best of {args.repeats} rounds of {args.steps} steps, "
          f"ours and HF in turns; tokens = batch x context per step")
    header = ("size", "params", "ours tok/s", "HF tok/s", "ours/HF", "ours GFLOP/s", "% peak", "HF % peak")
    table = [header]
    for r in results:
        s = r["size"]
        gflops = lambda tps: tps * r["flops"] / 1e9  # noqa: E731
        table.append((s.name, f"{r['params'] / 1e6:.2f}M", f"{r['ours']:,.0f}", f"{r['hf']:,.0f}",
                      f"{r['ours'] / r['hf']:.2f}", f"{gflops(r['ours']):.1f}", f"{100 * gflops(r['ours']) / peak:.0f}%",
                      f"{100 * gflops(r['hf']) / peak:.0f}%"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]))
    for r in results:
        s = r["size"]
        ok = r["loss_diff"] < 1e-4 and r["norm_diff"] < 1e-3 and r["params"] == r["hf_params"]
        print(f"{s.name}: {s.n_layer} layers, {s.n_head} heads, {s.n_embd} wide, context {s.block_size}, batch "
              f"{s.batch_size}, vocab {s.vocab_size:,}; {r['flops'] / 1e6:.1f} MFLOP/token (training); HF attention "
              f"{r['attn']}, {r['hf_params']:,} parameters (ours {r['params']:,}); parity: first loss {r['loss']:.4f}, "
              f"|ours - HF| {r['loss_diff']:.1e}, grad-norm rel. diff {r['norm_diff']:.1e} ({'OK' if ok else 'MISMATCH'})")

    verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    goals = []
    for r in results:
        name, share = r["size"].name, r["ours"] * r["flops"] / 1e9 / peak
        goals.append(f"{name} faster than HF: {verdict(r['ours'] > r['hf'])}")
        goals.append(f"{name} >= {PEAK_GOALS[name]:.0%} of peak: {verdict(share >= PEAK_GOALS[name])}")
    print("goals: " + ", ".join(goals))


if __name__ == "__main__":
    main()
