"""What listing the runs costs (explorer.runs.list_runs, which the Train page calls on every
refresh, run_list.REFRESH_S): a runs root of --runs runs, most started by the app and finished,
some started from the command line (no train_config.json: their model is read from config.json),
two fine-tunes and two still training (status.json without a best loss yet, a metrics line
appended between listings, as a live run does). --before FILE times another copy of
explorer/runs.py beside this tree's, in the same rounds, so the two compare on a loaded machine:

    git show HEAD~1:explorer/runs.py > /tmp/runs_before.py
    .venv/bin/python benchmarks/runs_listing.py --before /tmp/runs_before.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lm.checkpoint import CONFIG_FILE, FORMAT, FORMAT_VERSION  # noqa: E402
from lm.model import GPTConfig  # noqa: E402
from lm.run_folder import LAUNCH_FILE, METRICS_FILE, STATUS_FILE, TRAIN_CONFIG_FILE  # noqa: E402
from lm.train_config import TrainConfig  # noqa: E402

STEPS, LOG_EVERY, EVAL_EVERY = 2000, 10, 100


def metrics_line(step: int) -> str:
    record = {"step": step, "train_loss": 3.0, "lr": 1e-3, "grad_norm": 0.5, "tokens_per_s": 9000.0, "elapsed": step / 10}
    return json.dumps({**record, "val_loss": 3.1 - step / 1e4} if step % EVAL_EVERY == 0 else record) + "\n"


def write_run(folder: Path, kind: str) -> None:
    """One run folder as the trainer and the app leave it: kind is app, cli, finetune or training."""
    folder.mkdir(parents=True)
    cfg = TrainConfig(out=str(folder), max_steps=STEPS)
    model = GPTConfig(vocab_size=1024, block_size=cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd)
    training = ({"finetune": {"method": "sft", "from": "models/demo", "settings": {}}} if kind == "finetune"
                else {"config": asdict(cfg)})
    (folder / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "model": model.to_dict(),
                                                  "training": {**training, "step": STEPS, "best_val_loss": 2.9}}))
    (folder / METRICS_FILE).write_text("".join(metrics_line(step) for step in range(LOG_EVERY, STEPS + 1, LOG_EVERY)))
    me = {"pid": os.getpid(), "started": psutil.Process().create_time()}
    if kind == "app":
        (folder / TRAIN_CONFIG_FILE).write_text(json.dumps(asdict(cfg), indent=2))
        (folder / LAUNCH_FILE).write_text(json.dumps({**me, "command": ["python", "-m", "lm", "train"], "processes": 1}))
    status = {"state": "running", "step": STEPS, "max_steps": 2 * STEPS} if kind == "training" else \
        {"state": "finished", "step": STEPS, "max_steps": STEPS, "best_val_loss": 2.9}
    (folder / STATUS_FILE).write_text(json.dumps({**me, **status}))


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--before", type=Path, help="another copy of explorer/runs.py to time beside this tree's")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="runs-listing-"))
    kinds = ["training"] * 2 + ["finetune"] * 2 + ["cli"] * (args.runs // 4) + ["app"] * (args.runs - 4 - args.runs // 4)
    for number, kind in enumerate(kinds):
        write_run(root / f"{kind}-{number}", kind)
    os.environ["LM_RUNS_DIR"] = str(root)
    sides = {"this tree": load(Path(__file__).resolve().parents[1] / "explorer" / "runs.py", "runs_now")}
    if args.before:
        sides["before"] = load(args.before, "runs_before")
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    step = STEPS
    for _ in range(args.rounds):
        step += LOG_EVERY  # the training runs log a line between refreshes, as they do every few seconds
        for number, kind in enumerate(kinds[:2]):
            with open(root / f"{kind}-{number}" / METRICS_FILE, "a") as f:
                f.write(metrics_line(step))
        for side, module in sides.items():
            started = time.perf_counter()
            listed = module.list_runs(root)
            seconds[side].append(time.perf_counter() - started)
            assert len(listed) == len(kinds)
    print(f"list_runs of {len(kinds)} runs ({kinds.count('app')} started by the app, {kinds.count('cli')} from the "
          f"command line, 2 fine-tunes, 2 training), {args.rounds} rounds:")
    for side, times in seconds.items():
        print(f"  {side:10s} median {statistics.median(times) * 1e3:6.2f} ms, fastest {min(times) * 1e3:6.2f} ms")
    if args.before:
        ratio = statistics.median(n / b for n, b in zip(seconds["this tree"], seconds["before"]))
        print(f"  this tree / before, paired median: {ratio:.2f}x")


if __name__ == "__main__":
    main()
