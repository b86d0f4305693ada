"""Benchmark: on a CPU without bf16, is anything slower than the code before the speed work?

Prints figures, checks one goal (it is not a test): "on a CPU without bf16, nothing gets
slower" (issue 18). Two trees of this repository run the same work in fp32 with
LM_CPU_BF16=0 (what `--precision auto` does on a CPU without native bf16):

  old: a checkout of --old-rev (default 06f1b30, the commit before the bf16 / GELU / fused
       AdamW / lean generation work), e.g. made with `git worktree add /tmp/oldlm 06f1b30`;
  new: this checkout.

Work, each in a fresh subprocess that imports `lm` from one tree only (so the two never mix):
  train A: the classroom shape (4 layers, 4 heads, 128 wide, context 128, batch 16, vocab 512,
           Tiny Shakespeare's bytes): tokens/s of the tree's own `Trainer._train_step`
           (learning rate, batch, forward and loss, backward, clipping, its make_optimizer's AdamW);
  train B: the GPT-2-tiny shape (6/6/384, context 256, batch 8, vocab 50,304, GPT-2 tokens);
  generate: the tree's `lm.generate.generate`, KV cache, greedy, 255 new tokens after 1 at
           GPT-2-tiny's shape with vocab 50,257: the new tree's plain path (explain=False, what
           the CLI and training samples use) and its explained path (what the Generate page runs),
           against the old tree's one path, which always explained.

Tokens/s are per second of the subprocess's CPU time (at one thread, what the work itself
costs: on a machine shared with other busy processes, wall-clock time mostly measures the
others). Subprocesses alternate old, new, old, new ... (--rounds times per kind of work), so
a change in the machine's load (its memory traffic still slows both) hits both alike; each
figure is the median of the paired ratios new/old within a round (above 1: new is faster).

Run from the repository root:
  git worktree add /tmp/oldlm 06f1b30886906ca5dc3c59d654dca74fa1189bd8
  nice .venv/bin/python benchmarks/fp32_regression.py --old /tmp/oldlm [--threads 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
SHAPES = {  # n_layer, n_head, n_embd, block_size, batch_size, vocab_size
    "train A": (4, 4, 128, 128, 16, 512),
    "train B": (6, 6, 384, 256, 8, 50_304),
}
GEN_SHAPE = (6, 6, 384, 256)  # at GPT-2's vocabulary, 50,257
NEW_TOKENS = 255
SEED = 1337


def train_worker(shape: tuple, steps: int, warmup: int) -> dict:
    """Tokens/s of this tree's training step, fp32, on a Trainer given the model and the ids
    (no run folder), as benchmarks/train.py builds it."""
    import numpy as np
    import torch

    from lm.device import Precision
    from lm.distributed import World
    from lm.model import GPT
    from lm.trainer import TrainConfig, Trainer, make_optimizer

    n_layer, n_head, n_embd, block_size, batch_size, vocab_size = shape
    cfg = TrainConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, batch_size=batch_size,
                      dropout=0.0, bias=True, max_steps=100_000, device="cpu", seed=SEED)
    text = TEXT.read_text(encoding="utf-8")
    if vocab_size < 50_257:
        ids = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)
    else:
        from lm.tokenizer import TiktokenTokenizer

        ids = np.array(TiktokenTokenizer("r50k_base").encode(text[:200_000]), dtype=np.uint16)
    torch.manual_seed(SEED)
    trainer = Trainer.__new__(Trainer)  # __init__ would read a corpus and write a run folder
    trainer.cfg, trainer.model, trainer.device = cfg, GPT(cfg.model_config(vocab_size)), "cpu"
    trainer.world, trainer.precision, trainer.signalled, trainer.stop_requested = World(), Precision(), False, False
    trainer.optimizer = make_optimizer(trainer.model, cfg, "cpu")
    trainer.train_ids, trainer.batches, trainer.step = ids, torch.Generator().manual_seed(SEED), 0
    trainer.task_data = None
    trainer._build_engine()
    for _ in range(warmup):
        trainer._train_step()
        trainer.step += 1
    start = time.process_time()
    for _ in range(steps):
        trainer._train_step()
        trainer.step += 1
    return {"tokens/s": steps * batch_size * block_size / (time.process_time() - start)}


def generate_worker(explain: bool) -> dict:
    """Tokens/s of this tree's cached greedy generation (best of 2 after a warm-up), and its ids."""
    import inspect

    import torch

    from lm.generate import Sampling, generate
    from lm.model import GPT, GPTConfig
    from lm.tokenizer import TiktokenTokenizer

    n_layer, n_head, n_embd, block_size = GEN_SHAPE
    torch.manual_seed(SEED)
    model = GPT(GPTConfig(vocab_size=50_257, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                          dropout=0.0)).eval()
    tokenizer = TiktokenTokenizer("r50k_base")
    settings = Sampling(temperature=0.0, max_new_tokens=NEW_TOKENS, stop_at_end_of_text=False)
    options = {"explain": explain} if "explain" in inspect.signature(generate).parameters else {}

    def run() -> list[int]:
        with torch.inference_mode():
            return [step.token_id for step in generate(model, tokenizer, [5962], settings, **options)]

    ids = run()
    best = float("inf")
    for _ in range(2):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return {"tokens/s": len(ids) / best, "ids": ids}


def worker(args) -> None:
    sys.path.insert(0, str(Path(args.tree).resolve()))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from common import offline_tiktoken_cache

    offline_tiktoken_cache()
    import torch

    torch.set_num_threads(args.threads)
    if args.work.startswith("train"):
        result = train_worker(SHAPES[args.work], args.steps, args.warmup)
    else:
        result = generate_worker(explain=args.work == "generate explained")
    import lm

    if not Path(lm.__file__).resolve().is_relative_to(Path(args.tree).resolve()):
        sys.exit(f"error: imported lm from {lm.__file__}, not from {args.tree}")
    print(json.dumps(result))


def run_worker(tree: Path, work: str, args) -> dict:
    env = dict(os.environ, LM_CPU_BF16="0", PYTHONPATH="")
    command = [sys.executable, __file__, "--worker", "--tree", str(tree), "--work", work, "--threads", str(args.threads),
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tree)
    if done.returncode != 0:
        sys.exit(f"error: {work} in {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="/tmp/oldlm", help="a checkout of the old revision (git worktree add ...)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads in every subprocess")
    parser.add_argument("--rounds", type=int, default=5, help="old/new pairs per kind of work")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per subprocess")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    parser.add_argument("--only", nargs="*", default=None, help="kinds of work to run (default: all)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    old = Path(args.old)
    if not (old / "lm" / "generate.py").is_file():
        sys.exit(f"error: {old} is not a checkout of this repository: "
                 f"git worktree add {old} 06f1b30886906ca5dc3c59d654dca74fa1189bd8")
    rev = subprocess.run(["git", "-C", str(old), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    # new generate (plain and explained) is each paired with the old one path
    pairs = {"train A": "train A", "train B": "train B", "generate": "generate", "generate explained": "generate"}
    works = args.only or list(pairs)
    print(f"old: {old} at {rev.stdout.strip()}; new: {REPO} at {head.stdout.strip()} (plus uncommitted changes); "
          f"fp32, LM_CPU_BF16=0, {args.threads} thread(s), {args.rounds} rounds, old and new alternating")
    load_before = os.getloadavg()[0]
    rows, same_ids = [], {}
    for work in works:
        ratios, olds, news = [], [], []
        for _ in range(args.rounds):
            before = run_worker(old, pairs[work], args)
            after = run_worker(REPO, work, args)
            olds.append(before["tokens/s"])
            news.append(after["tokens/s"])
            ratios.append(after["tokens/s"] / before["tokens/s"])
            if "ids" in after:
                same_ids[work] = before["ids"] == after["ids"]
        rows.append((work, statistics.median(olds), statistics.median(news), statistics.median(ratios),
                     min(ratios), max(ratios)))
        print(f"  {work:<19} old {rows[-1][1]:9.1f} tok/s   new {rows[-1][2]:9.1f} tok/s   new/old "
              f"{rows[-1][3]:.2f}x (rounds {rows[-1][4]:.2f}-{rows[-1][5]:.2f})", flush=True)
    print(f"machine load (1-minute average) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    for work, same in same_ids.items():
        print(f"greedy ids, {work} new == old: {'OK' if same else 'MISMATCH'}")
    slower = [r[0] for r in rows if r[3] < 0.97]
    print("goal (nothing slower in fp32; a median ratio under 0.97x counts as slower): "
          + ("PASS" if not slower else f"FAIL ({', '.join(slower)})"))


if __name__ == "__main__":
    main()
