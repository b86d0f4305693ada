"""Lesson 4's run, as its first step starts it: the copy task's preset (`python -m lm train
--data task:copy`, one process, the preset's seed and one thread), timed from start to finish.
Prints the steps, the wall time, the load average, the exact-match accuracy and, from the last
attention snapshot, the induction head the lesson opens (the best past layer 0) and its score
on the standard probe; then when that head first scored 0.7. The lesson's claims rest on these.

    python benchmarks/copy_lesson.py              # the preset as shipped
    python benchmarks/copy_lesson.py --seed 1     # another seed: is the head there too?
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from explorer.lesson_steps import best_induction_head  # noqa: E402
from lm.run_folder import DETECTORS_FILE, read_jsonl  # noqa: E402

CLAIMED = 0.7  # the induction score Lesson 4 promises


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="train with this seed instead of the preset's")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="copy-lesson-")) / "run"
    command = [sys.executable, "-m", "lm", "train", "--data", "task:copy", "--out", str(out)]
    command += ["--seed", str(args.seed)] if args.seed is not None else []
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    load_after = os.getloadavg()[0]

    config = json.loads((out / "config.json").read_text())["training"]["config"]
    accuracy = [m["task_accuracy"] for m in read_jsonl(out / "metrics.jsonl") if "task_accuracy" in m][-1]
    snapshots = read_jsonl(out / DETECTORS_FILE)
    layer, head = best_induction_head(out)
    score = snapshots[-1]["scores"]["induction"][layer][head]
    first_layer = max(snapshots[-1]["scores"]["induction"][0])
    reached = next((s["step"] for s in snapshots if s["scores"]["induction"][layer][head] >= CLAIMED), None)
    print(f"copy task: {config['n_layer']} layers x {config['n_head']} heads, {config['n_embd']} wide, "
          f"batch {config['batch_size']}, {config['max_steps']} steps, seed {config['seed']}, {config['threads']} thread(s)")
    print(f"wall time {seconds:.1f} s (load average {load_before:.2f} before, {load_after:.2f} after)")
    print(f"exact-match accuracy {accuracy:.1%}")
    print(f"induction head the lesson opens: layer {layer} head {head}, score {score:.2f} "
          f"(best in layer 0: {first_layer:.2f}); {CLAIMED} first reached at step {reached}")


if __name__ == "__main__":
    main()
