"""Benchmark of training in several processes on the CPU: tokens/s of `python -m lm train` in one
process against `torchrun --nproc_per_node N -m lm train` (DDP, gloo), one PyTorch thread each.

Prints figures, checks nothing (it is not a test). Size A of benchmarks/train.py (4 layers, 4
heads, 128 wide, context 128) on Tiny Shakespeare with the project's BPE of 512 tokens, dropout 0,
fp32. Two comparisons:

  same global batch:       1 process of batch 16 vs N processes of batch 16/N (the same work
                           per step, split: "strong scaling");
  same batch per process:  1 process of batch 16 vs N processes of batch 16 (N times the work
                           per step: "weak scaling").

Tokens/s is what the trainer logs: every process's tokens in the logged steps over their
training time (evaluation and saving excluded), the median over the intervals after the first
(which pays for warming up). Each setting runs --repeats times, the settings in turns so that a
change in the machine's load hits all alike, and the best is kept. N processes on N free cores
can at best give N times the tokens/s of one; each step they also average the gradients
(one all-reduce of the 3.5 MB of fp32 gradients over gloo). On a machine shared with other
work, the figures are noisy: the load average is printed before and after.

Run from the repository root:  .venv/bin/python benchmarks/ddp.py [--processes 2] [--steps 60] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lm.data import load_corpus, read_text_file  # noqa: E402
from lm.run_folder import read_metrics  # noqa: E402
from lm.tokenizer import BPETokenizer  # noqa: E402

SHARED_TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
SIZE_A = dict(n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.0, lr=1e-3, warmup_steps=10, seed=1337)


def train_command(processes: int, options: dict) -> list[str]:
    flags = [item for k, v in options.items() for item in ("--" + k.replace("_", "-"), str(v))]
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] if processes > 1 else []
    return [sys.executable, *launcher, "-m", "lm", "train", *flags]


def tokens_per_second(processes: int, batch_size: int, steps: int, common: dict, out: Path) -> float:
    options = {**SIZE_A, **common, "batch_size": batch_size, "max_steps": steps, "out": out}
    result = subprocess.run(train_command(processes, options), cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    if result.returncode != 0:
        sys.exit(f"error: training in {processes} process(es) failed:\n{result.stderr[-6000:]}")
    records = read_metrics(out)
    return statistics.median(r["tokens_per_s"] for r in records[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="processes to compare with one (default 2)")
    parser.add_argument("--steps", type=int, default=60, help="training steps per run (default 60)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting; the best counts (default 2)")
    args = parser.parse_args()
    n = args.processes
    if n < 2 or 16 % n:
        sys.exit("error: --processes must be 2, 4, 8 or 16 (it splits a batch of 16)")

    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        tmp = Path(tmp)
        text = read_text_file(SHARED_TEXT) if SHARED_TEXT.is_file() else load_corpus("tinyshakespeare")
        (tmp / "text.txt").write_text(text, encoding="utf-8")
        BPETokenizer.train(text[: int(len(text) * 0.9)], 512, name="bpe-512").save(tmp / "bpe.json")
        common = dict(data=tmp / "text.txt", tokenizer=tmp / "bpe.json", threads=1, device="cpu", log_every=10,
                      eval_every=10**6, eval_batches=1, sample_every=0)
        settings = {"1 process, batch 16": (1, 16), f"{n} processes, batch {16 // n} each": (n, 16 // n),
                    f"{n} processes, batch 16 each": (n, 16)}
        load_before = os.getloadavg()
        best = {name: 0.0 for name in settings}
        for repeat in range(args.repeats):
            for name, (processes, batch) in settings.items():
                out = tmp / f"run-{processes}-{batch}-{repeat}"
                best[name] = max(best[name], tokens_per_second(processes, batch, args.steps, common, out))
        load_after = os.getloadavg()

    one = best["1 process, batch 16"]
    print(f"CPU, fp32, one PyTorch thread per process, os.cpu_count() = {os.cpu_count()}; size A (4 layers, 128 wide, "
          f"context 128, vocab 512); {args.steps} steps a run, best of {args.repeats}")
    print(f"load average (1, 5, 15 min): before {', '.join(f'{x:.2f}' for x in load_before)}; "
          f"after {', '.join(f'{x:.2f}' for x in load_after)}")
    width = max(map(len, settings))
    print(f"{'setting'.ljust(width)}  {'tokens/s':>9}  {'vs 1 process':>12}")
    for name, value in best.items():
        print(f"{name.ljust(width)}  {value:>9,.0f}  {value / one:>11.2f}x")


if __name__ == "__main__":
    main()
