"""What an Attention page rerun with nothing changed costs the server at SmolLM2-135M's shape
(30 layers, 9 heads: its every-head weights are 18 MB at 128 tokens, 71 MB at 256), headless:
AppTest reruns of app_pages/attention.py on its Attention map tab, the pass already cached, so
what is left is reading the cache and drawing the page. No browser (benchmarks/rerun_cost.py
times the browser's part, with the demo model). Random weights and a small Shakespeare BPE:
the cost depends on the shapes, not the values.

  --compare DIR  the same page from another checkout (e.g. `git archive` of an older commit
                 unpacked in DIR) in a second process, the two taking turns rerun by rerun so a
                 busy moment hits both alike; prints each side's median and the median ratio.

    .venv/bin/python benchmarks/attention_rerun.py [--rounds 15] [--compare DIR]

Timings on a shared machine are noisy: the 1-minute load average is printed."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import paired_ratio  # benchmarks/ is on sys.path as the script folder

REPO = Path(__file__).resolve().parents[1]
LENGTHS = (128, 256)
MODEL = "smollm2-135m"


def worker(repo: Path) -> None:
    """Reads a text file's path per line, answers the seconds of one rerun of the page on it
    (after a first run that fills the caches) and the tokens it read."""
    sys.path.insert(0, str(repo))
    from streamlit.testing.v1 import AppTest

    pages: dict[str, AppTest] = {}
    for line in sys.stdin:
        text = Path(line.strip()).read_text(encoding="utf-8")
        if line not in pages:
            at = pages[line] = AppTest.from_file(str(repo / "app_pages" / "attention.py"), default_timeout=600)
            at.query_params["model"] = MODEL  # not the demo model beside it
            at.run()
            at.text_area(key="att_text").set_value(text).run()
            assert not at.exception, at.exception
        at = pages[line]
        start = time.perf_counter()
        at.run()
        seconds = time.perf_counter() - start
        assert not at.exception, at.exception
        read = next(m.value for m in at.markdown if m.value.startswith(f"**{MODEL}** reads ")).split()[2]
        print(f"{seconds:.6f} {read}", flush=True)


def make_model(runs: Path) -> list[Path]:
    """The model in `runs`, and a text file per length in LENGTHS."""
    sys.path.insert(0, str(REPO))
    import torch

    from lm.checkpoint import save_checkpoint
    from lm.model import GPT
    from lm.open_models import OPEN_MODELS
    from tests.checkpoints import shakespeare_bpe
    from tests.conftest import SHAKESPEARE_FILE

    tokenizer = shakespeare_bpe()
    torch.manual_seed(0)
    model = GPT(OPEN_MODELS[MODEL].config(context=max(LENGTHS))).eval()
    save_checkpoint(runs / MODEL, model, tokenizer, {"note": "random weights, SmolLM2-135M's shape"})
    ids = tokenizer.encode(SHAKESPEARE_FILE.read_text(encoding="utf-8")[:20_000])
    texts = []
    for length in LENGTHS:
        texts.append(runs.parent / f"text_{length}.txt")
        texts[-1].write_text(tokenizer.decode(ids[:length]), encoding="utf-8")
    return texts


def start(repo: Path, runs: Path) -> subprocess.Popen:
    env = os.environ | {"LM_RUNS_DIR": str(runs), "LM_TOKENIZERS_DIR": str(runs.parent / "tokenizers"),
                        "LM_DATA_DIR": str(runs.parent / "data")}
    return subprocess.Popen([sys.executable, __file__, "--worker", str(repo)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=repo)


def ask(process: subprocess.Popen, text: Path) -> tuple[float, str]:
    process.stdin.write(f"{text}\n")
    process.stdin.flush()
    seconds, read = process.stdout.readline().split()
    return float(seconds), read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--compare", type=Path, help="another checkout's root, timed in turn with this one")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    with tempfile.TemporaryDirectory() as folder:
        runs = Path(folder) / "runs"
        texts = make_model(runs)
        sides = {"this": REPO} | ({"compare": args.compare.resolve()} if args.compare else {})
        workers = {name: start(repo, runs) for name, repo in sides.items()}
        print(f"{MODEL}'s shape, random weights; load average {os.getloadavg()[0]:.1f} at the start")
        for text in texts:
            times: dict[str, list[float]] = {name: [] for name in sides}
            for name in sides:
                ask(workers[name], text)  # the first run computes and fills the caches: not counted
            for round_ in range(args.rounds):
                for name in sides if round_ % 2 == 0 else reversed(sides):
                    seconds, read = ask(workers[name], text)
                    times[name].append(seconds)
            line = f"{read:>4} tokens: " + ", ".join(f"{name} {statistics.median(t) * 1000:.1f} ms" for name, t in
                                                     times.items())
            if args.compare:
                line += f"; compare / this {paired_ratio(times, 'compare', 'this'):.2f}x (median of the paired ratios)"
            print(line, flush=True)
        for process in workers.values():
            process.stdin.close()
            process.wait()
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
