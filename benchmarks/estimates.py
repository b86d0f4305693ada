"""Time estimates against reality: plan each size preset (on Tiny Shakespeare, with the Train
page's 512-token BPE) and each synthetic task as the Train page does, estimate it as the page
shows it before Start, start it as the page does (a process of its own), and time it from the
start to its finished status. Prints estimate, measured time and their ratio per run.

    python benchmarks/estimates.py                 # every preset and task, runs cut to ~--seconds each
    python benchmarks/estimates.py --full copy     # the copy task at its own length (as Lesson 4 runs it)

A run longer than --seconds (by its estimate) is cut to fewer steps, its schedule unchanged."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from explorer import workspace  # noqa: E402
from lm.estimate import estimate, measure_costs, run_threads, startup_seconds, tokenizer_seconds  # noqa: E402
from lm.plan import PRESETS, RunChoice, plan_run  # noqa: E402
from lm.tasks import TASKS, TASK_PREFIX  # noqa: E402

SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"


def choices() -> dict[str, RunChoice]:
    runs = {f"{size} preset": RunChoice({"data": str(SHAKESPEARE), "tokenizer": "bpe:512"}, vocab_size=512, size=size)
            for size in PRESETS}
    runs |= {f"{name} task": RunChoice({"data": TASK_PREFIX + name}) for name in TASKS}
    return runs


def finished_seconds(name: str, plan, poll: float = 0.2) -> float:
    from explorer import runs

    started = time.perf_counter()
    runs.start_run(name, plan)
    while True:
        info = runs.run_info(runs.run_folder(name))
        if not info.active:
            if info.state != "finished":
                raise SystemExit(f"error: {name} ended {info.state}: {info.error}")
            return time.perf_counter() - started
        time.sleep(poll)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="run only these (e.g. tiny copy)")
    parser.add_argument("--seconds", type=float, default=60, help="cut longer runs to about this long (estimated)")
    parser.add_argument("--full", action="store_true", help="never cut a run")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for every run (0: each run's own)")
    args = parser.parse_args()
    os.environ["LM_RUNS_DIR"] = tempfile.mkdtemp(prefix="estimates-")
    startup = startup_seconds()
    print(f"startup (process and imports): {startup:.1f} s; runs in {os.environ['LM_RUNS_DIR']}")
    print(f"{'run':16} {'steps':>6} {'batch timed':>11} {'step':>7} {'train':>7} {'eval':>6} {'extras':>6} "
          f"{'estimate':>9} {'measured':>9} {'ratio':>6}")
    for label, choice in choices().items():
        if args.only and label.split()[0] not in args.only:
            continue
        if args.threads:
            choice = replace(choice, settings={**choice.settings, "threads": args.threads})
        plan = plan_run(choice)  # the threads the run will have, as the Train page estimates it
        plan = replace(plan, config=replace(plan.config, threads=run_threads(plan.config.threads or workspace.threads_per_run())))
        costs = measure_costs(plan.config, plan.model)
        start = startup + tokenizer_seconds(plan.config, plan.text)
        full = estimate(plan.config, costs, start)
        steps = plan.config.max_steps
        if not args.full and full.run_seconds > args.seconds:
            per_step = (full.run_seconds - start) / steps
            steps = max(10, int((args.seconds - start) / per_step) // 10 * 10)
        cut = replace(plan, config=replace(plan.config, max_steps=min(steps, plan.config.max_steps)))
        timed = estimate(cut.config, costs, start)
        measured = finished_seconds(label.split()[0], cut)
        print(f"{label:16} {cut.config.max_steps:6d} {costs.timed_batch:11d} {costs.train_step * 1000:5.0f}ms "
              f"{timed.training:6.1f}s {timed.evaluation:5.1f}s {timed.extras:5.1f}s {timed.run_seconds:8.1f}s "
              f"{measured:8.1f}s {measured / timed.run_seconds:6.2f}", flush=True)


if __name__ == "__main__":
    main()
