"""Fine-tuning benchmark: what each method achieves from the models that exist here, and what
LoRA saves. Prints figures; checks nothing (it is not a test).

  spam      classify from the demo model (models/shakespeare-demo, trained on Shakespeare only)
            on the SMS Spam Collection: test accuracy on the balanced split (chance 50%)
            before and after, steps and seconds; with full fine-tuning and with LoRA.
  synthetic instruct (SFT) from the demo model on the project's synthetic instructions
            ("Turn the letters around." q-h-z -> z-h-q, ...) at lm finetune's defaults,
            once per seed (--seeds): held-out exact match before and after, by operation, the steps,
            the seconds (wall and CPU) and the load average.
  gpt2      a GPT-2-small-shaped model (124M parameters) with random weights (real ones cannot be
            downloaded here, so no accuracy: that needs the real weights): seconds per SFT step and
            peak memory, full fine-tuning against LoRA, and the parameters each trains. Each
            variant runs in its own process, so the peak resident memory (ru_maxrss) is its own.
  estimate  the Fine-tune page's time per step (a full step timed, times the ratio timed for
            what trains: lm.finetune.timing) against 60 real steps, full, LoRA and the last block.

The data comes from ../shared/data/finetune (copied into a temporary LM_DATA_DIR: no network).
Run from the repository root, nice'd on a shared machine:
    nice .venv/bin/python benchmarks/finetune.py [--only spam,synthetic,gpt2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEMO = REPO / "models" / "shakespeare-demo"
SHARED = REPO.parent / "shared" / "data" / "finetune"


def offline_data() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="ft-bench-"))
    (folder / "data" / "corpora").mkdir(parents=True)
    for file in SHARED.iterdir():
        shutil.copyfile(file, folder / "data" / "corpora" / file.name)
    os.environ["LM_DATA_DIR"] = str(folder / "data")
    return folder


def finetune(folder: Path, name: str, **settings) -> dict:
    from lm.finetune.config import FinetuneConfig
    from lm.finetune.loop import FinetuneRun

    run = FinetuneRun(FinetuneConfig(source=str(DEMO), out=str(folder / name), **settings))
    started, cpu_started = time.perf_counter(), time.process_time()
    run.train()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    evaluation = json.loads((folder / name / "evaluation.json").read_text())
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "steps": run.step, "trainable": run.trainable, "total": run.total, **evaluation}


def spam(folder: Path, threads: int) -> None:
    for label, extra in (("full", {}), ("LoRA r8", dict(lora_rank=8, lr=3e-3))):
        r = finetune(folder, f"spam-{label}", method="classify", data="sms-spam", max_steps=300, eval_interval=100,
                     threads=threads, **extra)
        print(f"spam ({label}): test accuracy {r['before']['accuracy']:.1%} -> {r['after']['accuracy']:.1%} "
              f"(n={r['after']['n']}, balanced), {r['steps']} steps in {r['seconds']:.0f} s (incl. evaluations), "
              f"{r['trainable']:,} of {r['total']:,} parameters trained; confusion {r['after']['confusion']}")


def synthetic(folder: Path, threads: int, seed: int) -> None:
    r = finetune(folder, f"synthetic-{seed}", method="instruct", data="synthetic", eval_interval=250, threads=threads,
                 seed=seed)
    print(f"seed {seed}: ", end="")
    by_op = {k: f"{r['before']['by_operation'][k]:.0%} -> {v:.0%}" for k, v in r["after"]["by_operation"].items()}
    print(f"synthetic instructions: held-out exact match {r['before']['exact_match']:.1%} -> "
          f"{r['after']['exact_match']:.1%} (n={r['after']['n']}; {', '.join(f'{k} {v}' for k, v in by_op.items())}), "
          f"{r['steps']} steps in {r['seconds']:.0f} s, {r['cpu_seconds']:.0f} s of CPU (incl. evaluations; load average {os.getloadavg()[0]:.1f} at the end)")
    for example in r["after"]["examples"][:3]:
        prompt = example["prompt"].split("### Instruction:\n")[1].split("\n")[0]
        print(f"    {prompt!r} -> {example['response']!r} (expected {example['expected']!r})")


def gpt2_step(variant: str, threads: int, steps: int) -> dict:
    """In a child process: seconds per SFT step of a GPT-2-small shape (batch 4 x 128 tokens)."""
    import torch

    from lm.finetune.config import FinetuneConfig
    from lm.finetune.lora import apply_lora, count_trainable
    from lm.model import GPT, GPTConfig
    from lm.trainer import make_optimizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768))
    if variant == "lora":
        apply_lora(model, rank=8, alpha=16)
    cfg = FinetuneConfig(source="-", lr=1e-4)
    optimizer = make_optimizer(model, cfg, "cpu")
    x = torch.randint(0, 50257, (4, 129))
    times = []
    for _ in range(steps + 1):  # the first step allocates the optimizer state: not timed
        start = time.perf_counter()
        model(x[:, :-1], x[:, 1:]).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    trainable, total = count_trainable(model)
    return {"step_seconds": min(times[1:]), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "trainable": trainable, "total": total}


def gpt2(threads: int, steps: int) -> None:
    results = {}
    for variant in ("full", "lora", "full", "lora"):  # in turns, so a change in the machine's load hits both
        out = subprocess.run([sys.executable, __file__, "--gpt2-child", variant, "--threads", str(threads),
                              "--steps", str(steps)], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        best = results.setdefault(variant, result)
        best["step_seconds"] = min(best["step_seconds"], result["step_seconds"])
    for variant, r in results.items():
        print(f"GPT-2 small shape ({variant}): {r['step_seconds']:.2f} s/step (batch 4 x 128, best of {2 * steps}), "
              f"peak memory {r['peak_rss_mb']:,.0f} MB, trains {r['trainable']:,} of {r['total']:,} parameters "
              f"({r['trainable'] / r['total']:.2%})")
    print("    (random weights: accuracy figures need the real GPT-2 weights, which cannot be downloaded here)")


def estimate_check(folder: Path, threads: int) -> None:
    """The Fine-tune page's time per step (the full step timed, times the ratio timed for what
    trains) against a real run's, for classify from the demo model: full, LoRA, the last block."""
    from explorer.finetune_estimate import example_lengths, run_time, timing_config, typical_length
    from explorer.finetune_runs import FinetuneRequest
    from lm.checkpoint import read_config
    from lm.estimate import measure_costs, seconds_per_step
    from lm.finetune.data import load_classification
    from lm.finetune.loop import choose_trainable
    from lm.finetune.timing import step_ratio
    from lm.run_folder import read_metrics
    from lm.tokenizer import load_tokenizer

    config, _ = read_config(DEMO)
    examples = load_classification("sms-spam")
    length = typical_length(example_lengths("classify", examples, load_tokenizer(DEMO / "tokenizer.json"),
                                            config.block_size), config.block_size)
    for label, extra in (("full", {}), ("LoRA r8", dict(lora_rank=8, lora_alpha=16.0, lora_targets=("attn", "mlp"))),
                         ("last block", dict(trainable_blocks=1))):
        request = FinetuneRequest(method="classify", source=str(DEMO), data="sms-spam", max_steps=60, lr=1e-3,
                                  batch_size=16, eval_interval=1000, threads=threads, **extra)
        costs = measure_costs(timing_config(request, config, length, "cpu", threads), config)
        ratio = 1.0 if not extra else step_ratio(config, lambda m: choose_trainable(m, request), 16, length, "cpu", threads)
        estimated = run_time(request, costs, 0.0, ratio).step_seconds
        finetune(folder, f"estimate-{label}", method="classify", data="sms-spam", max_steps=60, eval_interval=1000,
                 threads=threads, **{k: (",".join(v) if k == "lora_targets" else v) for k, v in extra.items()})
        measured = seconds_per_step(read_metrics(folder / f"estimate-{label}"))
        print(f"estimate ({label}): {estimated:.3f} s/step estimated (ratio to a full step {ratio:.2f}), {measured:.3f} "
              f"s/step measured over 60 steps: estimate / measured = {estimated / measured:.2f} "
              f"(load average {os.getloadavg()[0]:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="spam,synthetic,gpt2,estimate")
    parser.add_argument("--seeds", default="1337,1,2,3", help="seeds of the synthetic runs")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads (on a busy machine 1 is steadier)")
    parser.add_argument("--steps", type=int, default=3, help="timed GPT-2 steps per process")
    parser.add_argument("--gpt2-child", choices=("full", "lora"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gpt2_child:
        print(json.dumps(gpt2_step(args.gpt2_child, args.threads, args.steps)))
        return
    folder = offline_data()
    try:
        parts = {"spam": lambda: spam(folder, args.threads), "gpt2": lambda: gpt2(args.threads, args.steps),
                 "synthetic": lambda: [synthetic(folder, args.threads, int(seed)) for seed in args.seeds.split(",")],
                 "estimate": lambda: estimate_check(folder, args.threads)}
        for name in args.only.split(","):
            parts[name]()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
