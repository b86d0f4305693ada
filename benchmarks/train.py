"""Benchmark of training throughput (lm.trainer's step on lm.GPT) against nanoGPT and transformers' GPT-2, on CPU.

Prints figures, checks nothing but speed goals (it is not a test). Two sizes:
  A (classroom): 4 layers, 4 heads, 128 wide, context 128, batch 16, vocab 512;
  B (GPT-2-tiny): 6 layers, 6 heads, 384 wide, context 256, batch 8, vocab 50,304;
both with biases (as GPT-2) and dropout 0, on Tiny Shakespeare (../shared/data): A on
its bytes, B on its GPT-2 tokens (tiktoken r50k_base).

  ours fp32 / ours bf16: `Trainer._train_step` itself, the loop `python -m lm train` runs
        (learning rate, random_batch, forward with the loss under the run's autocast,
        backward, clip_grad_norm_, AdamW from make_optimizer, zero_grad), on a Trainer
        given the model and the ids instead of a run folder; bf16 is what
        `--precision auto` picks on a CPU with native bf16 (lm.device);
  nanoGPT fp32: benchmarks/nanogpt_peer.py (nanoGPT's computation: nn.Linear, exact GELU,
        its CPU AdamW) holding a copy of our initial weights, through the same _train_step;
  HF fp32: `GPT2LMHeadModel` of the same size (sdpa attention, dropouts 0) with our
        weights copied in, behind an adapter that computes the loss as ours does.

All see the same batches (the same weights: ours and HF's first losses must agree,
printed as parity). Each is warmed up (--warmup steps), then timed over --steps
steps in turns (ours fp32, ours bf16, nanoGPT, HF, ours fp32, ...) --repeats times.
Tokens/s are from each one's fastest round; the ratios the goals use are medians
over the rounds of the ratio within a round (paired: a burst of load on a shared
machine hits both sides of a ratio alike).

Loss check (--loss-steps, default 200; 0 skips it): ours from the same seed, trained
that many steps in fp32 and in bf16 on the same batches; printed: the mean training
loss of the last 10 steps, and the loss of the final weights on 8 fixed held-out
windows computed in fp32.

Goals: ours bf16 >= 1.2x nanoGPT fp32 on A and >= 1.4x on B; the bf16 loss after the
loss steps within 1% of fp32's; ours fp32 not slower than nanoGPT fp32 (>= 1.0x).

Run from the repository root:  nice .venv/bin/python benchmarks/train.py [--sizes AB] [--threads N]
[--repeats N] [--steps N] [--loss-steps N] [--no-hf] [--profile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # so `import lm` works when run as `python benchmarks/train.py`

from common import offline_tiktoken_cache, paired_ratio, transformers_gpt2  # noqa: E402 (benchmarks/ is on sys.path as the script folder)

offline_tiktoken_cache()  # before lm.tokenizer is imported: it settles tiktoken's cache folder

from lm.device import Precision, choose_precision, cpu_bf16_feature  # noqa: E402
from lm.distributed import World  # noqa: E402
from lm.model import GPT  # noqa: E402
from lm.sizing import parameter_count  # noqa: E402
from lm.trainer import TrainConfig, Trainer, make_optimizer  # noqa: E402
from nanogpt_peer import NanoGPTPeer, nanogpt_optimizer  # noqa: E402

SEED = 1337
TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
GOALS = {"A": 1.2, "B": 1.4}  # ours bf16 over nanoGPT fp32
LOSS_TOLERANCE = 0.01
BF16 = Precision(torch.bfloat16)


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


def train_config(size: Size) -> TrainConfig:
    return TrainConfig(n_layer=size.n_layer, n_head=size.n_head, n_embd=size.n_embd, block_size=size.block_size,
                       batch_size=size.batch_size, dropout=0.0, bias=True, max_steps=100_000, device="cpu", seed=SEED)


def token_ids(size: Size) -> np.ndarray:
    """Tiny Shakespeare as ids: its bytes for the small vocabulary, GPT-2's tokens for the large one."""
    text = TEXT.read_text(encoding="utf-8")
    if size.vocab_size < 50_257:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)
    from lm.tokenizer import TiktokenTokenizer

    return np.array(TiktokenTokenizer("r50k_base").encode(text), dtype=np.uint16)


def shell_trainer(model: torch.nn.Module, cfg: TrainConfig, ids: np.ndarray, precision: Precision = Precision(),
                  optimizer: torch.optim.Optimizer | None = None) -> Trainer:
    """A Trainer around `model` and in-memory token ids, without a run folder or a tokenizer,
    so that its own _train_step is what gets timed."""
    trainer = Trainer.__new__(Trainer)  # __init__ would read a corpus and write a run folder
    trainer.cfg, trainer.model, trainer.device = cfg, model, "cpu"
    trainer.world, trainer.precision, trainer.signalled, trainer.stop_requested = World(), precision, False, False
    trainer.optimizer = optimizer or make_optimizer(model, cfg, "cpu")
    trainer.train_ids, trainer.batches, trainer.step = ids, torch.Generator().manual_seed(SEED), 0
    trainer.task_data = None  # a corpus's token ids, not a synthetic task's examples
    trainer._build_engine()  # one process, not compiled: the model itself
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


def contestants(size: Size, cfg: TrainConfig, ids: np.ndarray, with_hf: bool) -> dict[str, Trainer]:
    """Every trainer of a size, each on its own copy of the same initial weights."""
    torch.manual_seed(SEED)
    ours = GPT(cfg.model_config(size.vocab_size))
    twin = GPT(cfg.model_config(size.vocab_size))
    twin.load_state_dict(ours.state_dict())
    peer = NanoGPTPeer(ours)
    trainers = {
        "ours fp32": shell_trainer(ours, cfg, ids),
        "ours bf16": shell_trainer(twin, cfg, ids, BF16),
        "nanoGPT fp32": shell_trainer(peer, cfg, ids, optimizer=nanogpt_optimizer(
            peer, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))),
    }
    if with_hf:
        trainers["HF fp32"] = shell_trainer(HFAdapter(transformers_gpt2(ours)), cfg, ids)
    return trainers


def bench_size(size: Size, args) -> dict:
    cfg, ids = train_config(size), token_ids(size)
    trainers = contestants(size, cfg, ids, not args.no_hf)
    first = {}
    for name, t in trainers.items():  # the same first batch for all: parity of the losses
        first[name] = t._train_step()[1]
        t.step += 1
        timed_steps(t, args.warmup)
    rounds = {name: [] for name in trainers}
    for _ in range(args.repeats):
        for name, t in trainers.items():
            rounds[name].append(timed_steps(t, args.steps))
    tokens = args.steps * size.batch_size * size.block_size
    paired = lambda fast, slow: paired_ratio(rounds, slow, fast)  # noqa: E731
    result = dict(size=size, params=parameter_count(trainers["ours fp32"].model.config), first=first,
                  tps={name: tokens / min(r) for name, r in rounds.items()},
                  bf16_vs_nano=paired("ours bf16", "nanoGPT fp32"), fp32_vs_nano=paired("ours fp32", "nanoGPT fp32"),
                  bf16_vs_fp32=paired("ours bf16", "ours fp32"))
    if "HF fp32" in trainers:
        result["fp32_vs_hf"] = paired("ours fp32", "HF fp32")
    if args.profile:
        for name in ("ours fp32", "ours bf16"):
            profile_step(trainers[name], f"{name}, size {size.name}")
    if args.loss_steps:
        result["losses"] = {p: loss_after(size, cfg, ids, precision, args.loss_steps)
                            for p, precision in (("fp32", Precision()), ("bf16", BF16))}
    return result


def loss_after(size: Size, cfg: TrainConfig, ids: np.ndarray, precision: Precision, steps: int) -> tuple[float, float]:
    """Ours from SEED trained `steps` steps: the mean loss of the last 10, and the final weights'
    loss on 8 fixed held-out windows (the text's last tenth), computed in fp32."""
    torch.manual_seed(SEED)
    trainer = shell_trainer(GPT(cfg.model_config(size.vocab_size)), replace(cfg, max_steps=steps), ids, precision)
    losses = []
    for _ in range(steps):
        losses.append(trainer._train_step()[1])
        trainer.step += 1
    held_out = ids[int(len(ids) * 0.9):]
    windows = torch.Generator().manual_seed(SEED + 1)
    trainer.precision = Precision()  # the held-out loss in fp32 for both
    with torch.no_grad():
        trainer.model.eval()
        val = statistics.mean(trainer.model(*trainer._batch(held_out, windows)).loss.item() for _ in range(8))
    return statistics.mean(losses[-10:]), val


def profile_step(trainer: Trainer, label: str) -> None:
    """Where a step spends its time: torch.profiler over 3 steps, top operators by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        timed_steps(trainer, 3)
    print(f"\nprofile of {label}, 3 steps:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=48))


def report(results: list[dict], args) -> None:
    names = list(results[0]["tps"])
    header = ("size", "params", *[f"{n} tok/s" for n in names], "bf16/nano", "fp32/nano", "bf16/fp32",
              *(["fp32/HF"] if "fp32_vs_hf" in results[0] else []))
    table = [header]
    for r in results:
        ratios = [r["bf16_vs_nano"], r["fp32_vs_nano"], r["bf16_vs_fp32"]] + ([r["fp32_vs_hf"]] if "fp32_vs_hf" in r else [])
        table.append((r["size"].name, f"{r['params'] / 1e6:.2f}M", *[f"{r['tps'][n]:,.0f}" for n in names],
                      *[f"{x:.2f}x" for x in ratios]))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]))
    print("(tok/s: fastest round; ratios: medians of the ratios within each round, paired)")
    goals = []
    for r in results:
        s, first = r["size"], r["first"]
        parity = ", ".join(f"{n} {v:.4f}" for n, v in first.items())
        print(f"{s.name}: {s.n_layer} layers, {s.n_head} heads, {s.n_embd} wide, context {s.block_size}, batch "
              f"{s.batch_size}, vocab {s.vocab_size:,}; first loss on the same batch: {parity}")
        goals.append(f"{s.name} bf16 >= {GOALS[s.name]}x nanoGPT: {verdict(r['bf16_vs_nano'] >= GOALS[s.name])}")
        goals.append(f"{s.name} fp32 >= 1.0x nanoGPT: {verdict(r['fp32_vs_nano'] >= 1.0)}")
        if "losses" in r:
            (t32, v32), (t16, v16) = r["losses"]["fp32"], r["losses"]["bf16"]
            gap = max(abs(t16 - t32) / t32, abs(v16 - v32) / v32)
            print(f"{s.name}: after {args.loss_steps} steps from seed {SEED}: training loss (mean of the last 10) fp32 "
                  f"{t32:.4f}, bf16 {t16:.4f} ({(t16 - t32) / t32:+.2%}); held-out loss in fp32 fp32 {v32:.4f}, "
                  f"bf16 {v16:.4f} ({(v16 - v32) / v32:+.2%})")
            goals.append(f"{s.name} bf16 loss within {LOSS_TOLERANCE:.0%}: {verdict(gap <= LOSS_TOLERANCE)}")
    print("goals: " + ", ".join(goals))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per trainer")
    parser.add_argument("--steps", type=int, default=5, help="training steps per timed round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first, per trainer")
    parser.add_argument("--sizes", default="AB", help="which sizes to run: A, B or AB (default AB)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own choice)")
    parser.add_argument("--loss-steps", type=int, default=200, help="steps of the fp32/bf16 loss check (0: skip it)")
    parser.add_argument("--no-hf", action="store_true", help="leave transformers out")
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's table for our steps")
    args = parser.parse_args()
    if args.repeats < 1 or args.steps < 1 or args.warmup < 0 or args.loss_steps < 0:
        sys.exit("error: --repeats and --steps must be at least 1, --warmup and --loss-steps at least 0")
    sizes = [s for s in SIZES if s.name in args.sizes.upper()]
    if not sizes:
        sys.exit("error: --sizes takes A, B or AB")
    if not args.no_hf:
        try:
            import transformers  # noqa: F401
        except ImportError:
            sys.exit("error: transformers is not installed (pip install -r requirements-dev.txt), or pass --no-hf")
    if args.threads:
        torch.set_num_threads(args.threads)
    feature = cpu_bf16_feature()
    auto = choose_precision("auto", "cpu", feature is not None, feature)
    load_before = os.getloadavg()
    results = [bench_size(size, args) for size in sizes]
    load_after = os.getloadavg()
    print(f"torch {torch.__version__}, CPU, torch.get_num_threads() = {torch.get_num_threads()}, os.cpu_count() = "
          f"{os.cpu_count()}; --precision auto here: {auto.describe()}")
    print(f"load average (1, 5, 15 min): before {', '.join(f'{x:.2f}' for x in load_before)}; after "
          f"{', '.join(f'{x:.2f}' for x in load_after)}")
    print(f"timing: {args.warmup} warm-up steps, then {args.repeats} rounds of {args.steps} steps, in turns; "
          f"tokens = batch x context per step")
    report(results, args)


if __name__ == "__main__":
    main()
