"""Page speed a class feels, in Chromium against the real app (median of several runs):

  cold start   the server started afresh → the first chart drawn on Home (and the first heatmap on Attention)
  page switch  a click in the sidebar → the page's script done and its first chart drawn
  tab change   a click on an Attention tab → the script done and the tab's chart drawn
  refresh      a reload of the Train page watching a run that trains → its loss chart drawn

    .venv/bin/python benchmarks/page_speed.py [--rounds 3]

The app runs with its own empty runs, tokenizers and data folders (a copy of Tiny Shakespeare),
like the browser tests, so the demo model is the one model there is."""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, serve_app  # noqa: E402  the browser tests' server
from tests.helpers import TINY_RUN, wait_for  # noqa: E402
from explorer.workspace import QUEUE_DIR  # noqa: E402
from lm.slots import QUEUE_ENV, SLOTS_ENV  # noqa: E402

CHART = '[data-testid="stMain"] [data-testid="stPlotlyChart"] .main-svg'
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
PAGES = ["Tokenizer", "Attention", "Generate", "Train", "Home"]  # the sidebar's order, round and back
ATTENTION_TABS = ["All heads", "Head detectors", "Ablation", "Step through one head", "Head statistics", "Model view",
                  "Across training", "Attention map"]
TIMEOUT_MS = 60_000


FIRST_VIEW = """([heading, chart]) => {
  const main = document.querySelector('[data-testid="stMain"]');
  const h1 = main && main.querySelector('h1');
  const idle = document.querySelector('[data-testid="stApp"][data-test-script-state="notRunning"]');
  if (!h1 || !h1.textContent.includes(heading) || !idle) return false;
  const drawn = main.querySelector('[data-testid="stPlotlyChart"] .main-svg');
  return chart ? !!drawn : !main.querySelector('[data-testid="stPlotlyChart"]');
}"""
HEADINGS = {"": "LLM Explorer", "Home": "LLM Explorer", "finetune": "Fine-tune"}  # else the page's name
# Pages whose first view has a chart (Attention's open tab is drawn by a second run, once the
# browser says which tab is open). Home had none before this benchmark was written.
CHARTED = {"attention", "home", ""}


def drawn(page, name: str, chart: bool | None = None) -> None:
    """Wait for the page's title, its script done and its first chart drawn (if it has one)."""
    heading = HEADINGS.get(name, name.title())
    chart = name.lower() in CHARTED if chart is None else chart
    page.wait_for_function(FIRST_VIEW, arg=[heading, chart], timeout=TIMEOUT_MS, polling=20)


def cold_start(browser, home: Path, path: str, chart: bool) -> float:
    """Seconds from starting the server to the page's first chart (or its script done, if it has none)."""
    started = time.perf_counter()
    with serve_app(home) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(f"{url}/{path}")
        drawn(page, path, chart)
        seconds = time.perf_counter() - started
        page.close()
    return seconds


def page_switches(page, rounds: int, home_chart: bool) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in PAGES}
    for _ in range(rounds + 1):  # the first round warms the caches: not counted
        for name in PAGES:
            link = page.locator('[data-testid="stSidebarNavLink"]', has_text=name)
            started = time.perf_counter()
            link.click()
            page.wait_for_timeout(50)  # the rerun to begin
            drawn(page, name, home_chart if name == "Home" else None)
            times[name].append(time.perf_counter() - started)
    return {name: values[-rounds:] for name, values in times.items()}


def tab_changes(page, url: str, rounds: int) -> dict[str, list[float]]:
    page.goto(f"{url}/attention")
    drawn(page, "attention")
    times: dict[str, list[float]] = {name: [] for name in ATTENTION_TABS}
    for _ in range(rounds + 1):
        for name in ATTENTION_TABS:
            started = time.perf_counter()
            page.get_by_role("tab", name=name).click()
            page.wait_for_timeout(50)
            page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
            page.locator('[role="tabpanel"]:visible [data-testid="stPlotlyChart"] .main-svg, '
                         '[role="tabpanel"]:visible [data-testid="stDataFrame"], '
                         '[role="tabpanel"]:visible [data-testid="stAlert"]').first.wait_for(timeout=TIMEOUT_MS)
            times[name].append(time.perf_counter() - started)
    return {name: values[-rounds:] for name, values in times.items()}


@contextlib.contextmanager
def training_run(home: Path, name: str = "speed-run", slots: int = 0):
    """A tiny run training for as long as it is needed, started from the command line into the app's runs folder.
    With `slots`, it takes one of that many training slots as a run started from the app in classroom
    mode does, and so trains at the priority the app gives it (lm.slots: nice 10)."""
    folder = home / "runs" / name
    corpus = next((home / "data" / "corpora").iterdir())
    options = {**TINY_RUN, "max_steps": 100_000, "sample_every": 200, "eval_every": 200}
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    queue = {SLOTS_ENV: str(slots), QUEUE_ENV: str(home / "runs" / QUEUE_DIR)} if slots else {}
    process = subprocess.Popen([sys.executable, "-m", "lm", "train", f"--data={corpus}", f"--out={folder}", *flags],
                               cwd=REPO, env={**os.environ, **queue}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (folder / "metrics.jsonl").is_file() and (folder / "metrics.jsonl").stat().st_size > 0,
                 timeout=180)
        yield folder.name
    finally:
        process.terminate()
        process.wait(timeout=30)


def refreshes(page, url: str, run: str, rounds: int) -> list[float]:
    page.goto(f"{url}/train?run={run}")
    page.wait_for_selector(CHART, state="visible", timeout=TIMEOUT_MS)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        page.reload()
        page.wait_for_selector(CHART, state="visible", timeout=TIMEOUT_MS)
        times.append(time.perf_counter() - started)
    return times


def line(label: str, values: list[float], note: str = "") -> None:
    spread = f"(min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"
    print(f"{label:<34} {statistics.median(values):6.2f} s  {spread}{note}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each measurement (the median is printed)")
    parser.add_argument("--home-chart", choices=["yes", "no"], default="yes",
                        help="whether Home has a chart to wait for (no: code from before it had one)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="page-speed-") as tmp, sync_playwright() as playwright:
        home = Path(tmp)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        home_chart = args.home_chart == "yes"
        for path, label, chart in [("", "cold start → Home", home_chart), ("attention", "cold start → Attention heatmap", True)]:
            line(label, [cold_start(browser, home, path, chart) for _ in range(args.rounds)],
                 "" if chart else "  (no chart: to the script's end)")
        with serve_app(home) as url:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(url)
            drawn(page, "", home_chart)
            for name, values in page_switches(page, args.rounds, home_chart).items():
                line(f"switch → {name}", values)
            for name, values in tab_changes(page, url, args.rounds).items():
                line(f"Attention tab → {name}", values)
            with training_run(home) as run:
                line("Train page refresh, run training", refreshes(page, url, run, args.rounds + 2))
        browser.close()


if __name__ == "__main__":
    main()
