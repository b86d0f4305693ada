"""kill -9 a tiny training run at random moments, resume it, and count what breaks.

Each try starts `python -m lm train` of a tiny run that saves a checkpoint every step,
kills it with SIGKILL at a random moment of its training (a random time within a step
after a random step's line is logged), and looks at the folder:

  mixed       the checkpoint files in place are not of one step: config.json's step,
              state.pt's step and the step whose weights model.safetensors holds (found
              by comparing with the weights an uninterrupted run had after each step);
  pending     a checkpoint cut short after its commit point (manifest.json "pending"),
              which resume is meant to finish;

then, in --kill-resume of the tries, starts `--resume` and kills that too at a random
moment (the logs are trimmed then); then resumes to the end with `--resume --max-steps`
and compares with the uninterrupted run:

  refused     the resume exited with an error (its message is shown);
  lost/extra  logged steps missing or twice in metrics.jsonl;
  differs     a logged loss or the final weights differ from the uninterrupted run.

Each command runs in a child forked from this process (torch imported once, so a try
waits through no start-up) and is killed there with a real SIGKILL. --tree runs another
copy of the code (e.g. `git archive <commit> lm | tar -x -C DIR`: only its lm/ is used),
so the figures before and after a change come from one script.

Run from the repository root:  .venv/bin/python benchmarks/crash.py [--tries 30] [--tree DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
SETTINGS = dict(
    n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=4, lr=3e-3, min_lr=3e-4, warmup_steps=2,
    log_every=1, eval_every=1, eval_batches=1, sample_every=2, sample_tokens=6, dropout=0.1, device="cpu",
    threads=1, seed=0,
)


def command(**options) -> list[str]:
    """The arguments of `python -m lm train` with these options."""
    return ["train", *(f"--{k.replace('_', '-')}={v}" for k, v in options.items())]


def start(argv: list[str], log: Path) -> int:
    """`python -m lm ARGV` in a child process forked from this one (torch already imported, so
    no start-up time to wait through); its output goes to `log`. Returns its pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            with open(log, "w") as out:
                os.dup2(out.fileno(), 1)
                os.dup2(out.fileno(), 2)
                from lm.__main__ import main

                code = main(argv)
        finally:
            os._exit(code)
    return pid


def finish(pid: int) -> int:
    """Wait for the child; its exit code (negative: the signal that ended it)."""
    status = os.waitpid(pid, 0)[1]
    return os.waitstatus_to_exitcode(status)


def kill_at_random(argv: list[str], log: Path, ready, delay: float) -> None:
    """Start `python -m lm ARGV`, wait until `ready()` (or its end), then SIGKILL it `delay` seconds later."""
    pid = start(argv, log)
    while not ready() and os.waitpid(pid, os.WNOHANG) == (0, 0):
        time.sleep(0.002)
    time.sleep(delay)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass  # it had finished


def lines_logged(folder: Path) -> int:
    try:
        return (folder / "metrics.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def reference(folder: Path, steps: int, inputs: dict) -> tuple[list[dict], dict[int, dict]]:
    """An uninterrupted run in this process: its metrics and its weights after every step."""
    from lm.trainer import Trainer, TrainConfig

    weights = {}
    save = Trainer.save

    def keep(trainer):
        weights[trainer.step] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items() if k != "lm_head.weight"}
        save(trainer)

    Trainer.save = keep
    try:
        Trainer(TrainConfig(**SETTINGS, **inputs, max_steps=steps, out=str(folder))).train()
    finally:
        Trainer.save = save
    return read_metrics(folder), weights


def read_metrics(folder: Path) -> list[dict]:
    lines = (folder / "metrics.jsonl").read_bytes().split(b"\n") if (folder / "metrics.jsonl").is_file() else []
    return [json.loads(line) for line in lines if line.strip()]


def same(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def on_disk(folder: Path, weights: dict[int, dict]) -> dict:
    """Which step each checkpoint file in place belongs to."""
    import torch
    from safetensors.torch import load_file

    found = {}
    if not (folder / "config.json").exists() and not (folder / "manifest.json").exists():
        return {"no_checkpoint": True}  # killed before its first: nothing to resume (and nothing mixed)
    try:
        found["config"] = json.loads((folder / "config.json").read_text())["training"]["step"]
        found["state"] = torch.load(folder / "state.pt", weights_only=True)["step"]
        saved = load_file(str(folder / "model.safetensors"))
        found["weights"] = next((step for step, w in weights.items() if same(saved, w)), "?")
    except (OSError, ValueError, KeyError) as exc:
        found["unreadable"] = f"{type(exc).__name__}: {exc}"
    manifest = folder / "manifest.json"
    found["pending"] = manifest.is_file() and json.loads(manifest.read_text()).get("state") == "pending"
    found["mixed"] = len({found.get("config"), found.get("state"), found.get("weights")}) > 1
    return found


def one_try(n: int, args, inputs: dict, straight: list[dict], weights: dict, timing: tuple[float, float], rng) -> dict:
    """Kill the run while it logs a random step (somewhere between that line and the next step's),
    in some tries kill its first resume too at a random moment of its start, then resume to the end."""
    folder, log = args.work / f"try-{n:02d}", args.work / f"try-{n:02d}.log"
    step_seconds, start_seconds = timing
    line = rng.randrange(1, args.steps)
    killed_after = rng.uniform(0, step_seconds)
    options = dict(SETTINGS, **inputs, max_steps=args.steps, out=folder)
    kill_at_random(command(**options), log, lambda: lines_logged(folder) >= line, killed_after)
    result = dict(try_=n, killed=f"{killed_after:.3f} s after line {line}") | on_disk(folder, weights)
    resume = ["train", "--resume", f"--out={folder}", f"--max-steps={args.steps}"]
    if rng.random() < args.kill_resume:
        lines = lines_logged(folder)
        kill_at_random(resume, log, lambda: True, rng.uniform(0, 1.2 * start_seconds))
        result["resume_killed_lines"] = (lines, lines_logged(folder))
    if finish(start(resume, log)):
        result["refused"] = log.read_text().strip().splitlines()[-1:]
        return result
    logged = read_metrics(folder)
    steps = [m["step"] for m in logged]
    result["lost"] = sorted(set(range(1, args.steps + 1)) - set(steps))
    result["extra"] = len(steps) - len(set(steps))
    by_step = {m["step"]: m for m in straight}
    deltas = [abs(m[key] - by_step[m["step"]][key]) for m in logged for key in ("train_loss", "val_loss") if key in m]
    result["max_dloss"] = max(deltas, default=0.0)
    from safetensors.torch import load_file

    result["weights_equal"] = same(load_file(str(folder / "model.safetensors")), weights[args.steps])
    result["differs"] = result["max_dloss"] > 0 or not result["weights_equal"] or bool(result["lost"]) or bool(result["extra"])
    return result


def timing(args, inputs: dict, straight: list[dict]) -> tuple[float, float]:
    """One uninterrupted run of the command: the seconds a step takes and the seconds to its
    first logged line (the start, which a resume's kill falls within); its losses must be the reference's."""
    cli = args.work / "cli"
    started = time.monotonic()
    pid = start(command(**SETTINGS, **inputs, max_steps=args.steps, out=cli), args.work / "cli.log")
    while not lines_logged(cli) and time.monotonic() - started < 600:
        time.sleep(0.002)
    first_line = time.monotonic()
    code = finish(pid)
    if code or [m["train_loss"] for m in read_metrics(cli)] != [m["train_loss"] for m in straight]:
        raise SystemExit(f"error: the command's run differs from the one in this process (exit code {code})")
    return (time.monotonic() - first_line) / (args.steps - 1), first_line - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=30)
    parser.add_argument("--steps", type=int, default=20, help="steps of each run (a checkpoint after each)")
    parser.add_argument("--tree", type=Path, default=REPO, help="the code to run (a folder holding lm/)")
    parser.add_argument("--kill-resume", type=float, default=0.3, help="the share of tries whose first resume is killed too")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.tree = args.tree.resolve()
    sys.path.insert(0, str(args.tree))
    args.work = Path(tempfile.mkdtemp(prefix="crash-"))
    os.environ["LM_DATA_DIR"] = str(args.work / "data")  # the token cache, away from the user's
    from lm.tokenizer import BPETokenizer

    text = TEXT.read_text(encoding="utf-8")[:12_000]
    (args.work / "text.txt").write_text(text, encoding="utf-8")
    BPETokenizer.train(text, 300).save(args.work / "bpe.json")
    inputs = dict(data=str(args.work / "text.txt"), tokenizer=str(args.work / "bpe.json"))

    straight, weights = reference(args.work / "straight", args.steps, inputs)
    step_seconds, start_seconds = timing(args, inputs, straight)
    print(f"code: {args.tree}; {args.tries} tries of {args.steps} steps, a checkpoint every step "
          f"({step_seconds * 1e3:.0f} ms a step; {start_seconds:.1f} s to start)")

    rng = random.Random(args.seed)
    results = []
    for n in range(args.tries):
        result = one_try(n, args, inputs, straight, weights, (step_seconds, start_seconds), rng)
        results.append(result)
        print(json.dumps(result, default=str), flush=True)
    count = lambda key: sum(1 for r in results if r.get(key))  # noqa: E731
    print(f"\n{args.tries} kills: before the first checkpoint {count('no_checkpoint')} (resume says so), "
          f"mixed {count('mixed')}, pending (to finish) {count('pending')}, "
          f"unreadable {count('unreadable')}, "
          f"curve or weights differ {count('differs')} (max |dloss| {max((r.get('max_dloss', 0) for r in results), default=0):.3g}), "
          f"steps lost {sum(len(r.get('lost', [])) for r in results)}, logged twice {sum(r.get('extra', 0) for r in results)}")
    refused = [r["refused"] for r in results if r.get("refused") and not r.get("no_checkpoint")]
    print(f"resumes refused with a checkpoint there: {len(refused)} {refused}")
    mixed_accepted = sum(1 for r in results if r.get("mixed") and not r.get("pending") and not r.get("refused"))
    print(f"mixed checkpoints resumed without repair: {mixed_accepted}")


if __name__ == "__main__":
    main()
