"""What a rerun with nothing changed costs each page, in Chromium against the real app: the
time from the rerun's start (Streamlit's R key, as a widget press would start it) to the
script done and the browser's next two frames painted, measured inside the page (no
Playwright round trips). Median of several reruns per page, on a quiet server and while two
runs train beside it, with the number of elements in the page's main area: the browser
redraws every one of them on every rerun, so that count is most of a rerun's cost.

    .venv/bin/python benchmarks/rerun_cost.py [--rounds 7] [--pages Fine-tune ...] [--compare DIR]

  --compare DIR  the same pages served from another checkout (e.g. `git archive` of an older
                 commit unpacked in DIR) beside this one, on the same runs: the two take turns
                 rerun by rerun, so a busy moment hits both alike; prints each side's median and
                 the median of their paired ratios.

The app runs with its own empty folders (the browser tests' server), so the demo model is the
one model there is. The two runs are a tiny training run and a fine-tune of the demo model
(continued pretraining, started from the command line), each in one of the app's two training
slots, so they train at the priority a run started from the app in classroom mode has (nice 10);
the Fine-tune page watches the fine-tune then (?run=), the Train page shows its runs table.
Timings on a shared machine are noisy: the 1-minute load average is printed."""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import paired_ratio  # noqa: E402
from benchmarks.page_speed import CHARTED, drawn, training_run  # noqa: E402
from explorer.workspace import QUEUE_DIR  # noqa: E402
from lm.slots import QUEUE_ENV, SLOTS_ENV  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, serve_app  # noqa: E402
from tests.helpers import wait_for  # noqa: E402

PAGES = {"Home": "", "Tokenizer": "tokenizer", "Attention": "attention", "Generate": "generate", "Train": "train",
         "Fine-tune": "finetune"}  # name: address
FINETUNE = "rerun-ft"  # the fine-tune that trains in the second part, watched there by the Fine-tune page
SIDES = ("this", "compare")

# Sets window.rerunMs to a promise of the milliseconds from now until the script has run and
# stopped again and two frames have been painted after that.
WATCH = """() => { window.rerunMs = new Promise((resolve, reject) => {
  const app = document.querySelector('[data-testid="stApp"]');
  const started = performance.now();
  let ran = false;
  const done = () => requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - started)));
  const watch = new MutationObserver(() => {
    const state = app.getAttribute('data-test-script-state');
    if (state !== 'notRunning') ran = true;  // rerunRequested, then running (a quick run may skip it)
    if (ran && state === 'notRunning') { watch.disconnect(); done(); }
  });
  watch.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  setTimeout(() => { watch.disconnect(); reject(new Error('no rerun within 30 s')); }, 30000);
}); }"""


def rerun(page) -> float:
    page.evaluate(WATCH)
    page.locator("body").press("r")  # Streamlit's key for "rerun"
    return page.evaluate("window.rerunMs") / 1000


# The elements the browser redraws on every rerun, each in an element container.
ELEMENTS = """() => document.querySelectorAll('[data-testid="stMain"] [data-testid="stElementContainer"]').length"""


def opened(browser, url: str, path: str, query: str, chart: bool):
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(f"{url}/{path}{query}")
    drawn(page, path, chart)
    page.wait_for_timeout(500)  # a page's second run (Attention's tab) and the warm-up thread settle
    page.mouse.click(1275, 360)  # the window takes keys once clicked (here: the main area's empty right margin)
    rerun(page)  # the first rerun after opening may still fill caches: not counted
    return page


def measure(urls: list[str], browser, rounds: int, pages: list[str], watched: str | None = None) -> dict:
    """Each page's rerun times and the elements in its main area, on each server in `urls`, the
    servers taking turns (each first in every other round). The Fine-tune page watches `watched`, if any."""
    times = {}
    for name in pages:
        path = PAGES[name]
        query, chart = (f"?run={watched}", True) if name == "Fine-tune" and watched else ("", path in CHARTED)
        tabs = [opened(browser, url, path, query, chart) for url in urls]
        values = [[] for _ in tabs]
        for turn in range(rounds):
            for side in (range(len(tabs)) if turn % 2 == 0 else reversed(range(len(tabs)))):
                values[side].append(rerun(tabs[side]))
        times[name] = [(seconds, tab.evaluate(ELEMENTS)) for seconds, tab in zip(values, tabs)]
        for tab in tabs:
            tab.close()
    return times


def print_times(label: str, times: dict) -> None:
    print(f"{label} (load average {os.getloadavg()[0]:.1f})", flush=True)
    for name, sides in times.items():
        for side, (values, elements) in zip(SIDES, sides):
            print(f"  {name:<10} {side if len(sides) > 1 else '':<8}{statistics.median(values):6.3f} s  (min "
                  f"{min(values):.3f}, max {max(values):.3f}, n={len(values)}; {elements} elements)", flush=True)
        if len(sides) > 1:
            ratio = paired_ratio(dict(zip(SIDES, (values for values, _ in sides))), "compare", "this")
            print(f"  {name:<10} compare/this {ratio:.2f}x (median of paired ratios)", flush=True)


@contextlib.contextmanager
def finetuning_run(home: Path, name: str, slots: int):
    """A fine-tune of the demo model (continued pretraining on the app's corpus) for as long as it is
    needed, started from the command line into one of the app's `slots` training slots. Yields once it
    has written its first checkpoint: the Fine-tune page knows a run started there as a fine-tune by it."""
    folder = home / "runs" / name
    corpus = next((home / "data" / "corpora").iterdir())
    flags = {"from": REPO / "models" / "shakespeare-demo", "out": folder, "data": corpus, "max-steps": 100_000,
             "eval-interval": 50, "log-every": 1, "batch-size": 4, "device": "cpu", "threads": 1}
    queue = {SLOTS_ENV: str(slots), QUEUE_ENV: str(home / "runs" / QUEUE_DIR)}
    process = subprocess.Popen([sys.executable, "-m", "lm", "finetune", "continue", *(f"--{k}={v}" for k, v in flags.items())],
                               cwd=REPO, env={**os.environ, **queue}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (folder / "config.json").is_file(), timeout=300)
        yield name
    finally:
        process.terminate()
        process.wait(timeout=30)


def shared_home(home: Path, other: Path) -> Path:
    """`other`, a second server's home holding `home`'s runs, tokenizers and data (its own log)."""
    other.mkdir()
    for folder in ("runs", "tokenizers", "data"):
        (home / folder).mkdir(parents=True, exist_ok=True)
        (other / folder).symlink_to(home / folder)
    return other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="reruns of each page (the median is printed)")
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), default=list(PAGES), help="the pages to measure")
    parser.add_argument("--compare", type=Path, metavar="DIR", help="another checkout, served beside this one")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="rerun-cost-") as tmp, sync_playwright() as playwright:
        home = Path(tmp) / "home"
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        with contextlib.ExitStack() as servers:
            urls = [servers.enter_context(serve_app(home))]
            if args.compare:
                urls.append(servers.enter_context(serve_app(shared_home(home, Path(tmp) / "compare"), args.compare)))
            print_times("a rerun with nothing changed, quiet server:", measure(urls, browser, args.rounds, args.pages))
            with contextlib.ExitStack() as runs:
                runs.enter_context(training_run(home, "rerun-a", slots=2))
                runs.enter_context(finetuning_run(home, FINETUNE, slots=2))
                print_times("the same while two runs train (the Fine-tune page watching the fine-tune):",
                            measure(urls, browser, args.rounds, args.pages, FINETUNE))
        browser.close()


if __name__ == "__main__":
    main()
