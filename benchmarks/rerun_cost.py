"""What a rerun with nothing changed costs each page, in Chromium against the real app: the
time from the rerun's start (Streamlit's R key, as a widget press would start it) to the
script done and the browser's next two frames painted, measured inside the page (no
Playwright round trips). Median of several reruns per page, on a quiet server and while two
runs train beside it, with the number of elements in the page's main area: the browser
redraws every one of them on every rerun, so that count is most of a rerun's cost.

    .venv/bin/python benchmarks/rerun_cost.py [--rounds 7]

The app runs with its own empty folders (the browser tests' server), so the demo model is the
one model there is; the two runs are tiny ones, each in one of the app's two training slots, so
they train at the priority a run started from the app in classroom mode has (nice 10)."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.page_speed import CHARTED, drawn, training_run  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, serve_app  # noqa: E402

PAGES = ["Home", "Tokenizer", "Attention", "Generate", "Train"]

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


def rerun_seconds(page, rounds: int) -> list[float]:
    rerun(page)  # the first rerun after opening may still fill caches: not counted
    return [rerun(page) for _ in range(rounds)]


def measure(url: str, browser, rounds: int) -> dict[str, tuple[list[float], int]]:
    """Each page's rerun times and the elements in its main area."""
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    times = {}
    for name in PAGES:
        path = "" if name == "Home" else name.lower()
        page.goto(f"{url}/{path}")
        drawn(page, path, path in CHARTED)
        page.wait_for_timeout(500)  # a page's second run (Attention's tab) and the warm-up thread settle
        page.mouse.click(1275, 360)  # the window takes keys once clicked (here: the main area's empty right margin)
        times[name] = rerun_seconds(page, rounds), page.evaluate(ELEMENTS)
    page.close()
    return times


def print_times(label: str, times: dict[str, tuple[list[float], int]]) -> None:
    print(label, flush=True)
    for name, (values, elements) in times.items():
        print(f"  {name:<10} {statistics.median(values):6.3f} s  (min {min(values):.3f}, max {max(values):.3f}, "
              f"n={len(values)}; {elements} elements)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="reruns of each page (the median is printed)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="rerun-cost-") as tmp, sync_playwright() as playwright:
        home = Path(tmp)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        with serve_app(home) as url:
            print_times("a rerun with nothing changed, quiet server:", measure(url, browser, args.rounds))
            with contextlib.ExitStack() as runs:
                for name in ("rerun-a", "rerun-b"):
                    runs.enter_context(training_run(home, name, slots=2))
                print_times("the same while two runs train:", measure(url, browser, args.rounds))
        browser.close()


if __name__ == "__main__":
    main()
