"""A class on one server: N students (30 by default) in Chromium, each in a browser context of
their own, sign in to the app in classroom mode and work on the Tokenizer, Attention and
Generate pages while the training line runs: three runs started, two training in the two
slots, one waiting. Prints the time from a widget change to the page idle again (p50, p95,
max), and checks that nothing was lost (every change answered, no error box, the text still
there) and that no student's Train page shows another student's run.

    .venv/bin/python benchmarks/classroom_load.py [--students 30] [--rounds 2]

The app runs with its own folders (the browser tests' server); on a shared machine the
figures include whatever else the CPUs are doing."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.async_api import async_playwright  # noqa: E402

from lm.slots import QUEUE_ENV, SLOTS_ENV  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, serve_app  # noqa: E402
from tests.helpers import TINY_RUN  # noqa: E402

CODE, PASSWORD, WORD = "owl-42", "hedgehog-teacher", "sesame"
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
TEXT_AREAS = {"Tokenizer": "st-key-tok_text", "Attention": "st-key-att_text", "Generate": "st-key-gen_prompt"}
TIMEOUT_MS = 300_000
RUN_AND_IDLE = """() => new Promise(resolve => {
  const app = document.querySelector('[data-testid="stApp"]');
  let running = false;
  const observer = new MutationObserver(() => {
    const state = app.getAttribute('data-test-script-state');
    if (state === 'running') running = true;
    else if (running && state === 'notRunning') { observer.disconnect(); resolve(true); }
  });
  observer.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  setTimeout(() => { observer.disconnect(); resolve(false); }, 120000);
})"""


def student(number: int) -> str:
    return f"student-{number:02d}"


def start_training(runs: Path, owners: list[int]) -> list[subprocess.Popen]:
    """Runs in these students' workspaces, through the line for the two slots (as the app starts them)."""
    env = {**os.environ, SLOTS_ENV: "2", QUEUE_ENV: str(runs / "_queue"), "PYTHONPATH": str(REPO)}
    corpus = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
    options = {**TINY_RUN, "max_steps": 1_000_000, "sample_every": 500, "eval_every": 200, "threads": 1}
    processes = []
    for number in owners:
        out = runs / "_students" / student(number) / "runs" / f"bench-{number:02d}"
        out.mkdir(parents=True)
        flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
        processes.append(subprocess.Popen([sys.executable, "-m", "lm", "train", f"--data={corpus}", f"--out={out}", *flags],
                                          cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1)  # in this order in line
    return processes


async def change(page, key: str, text: str) -> tuple[float, bool]:
    """Type into a text area and commit it; seconds until the page is idle again, and whether it ran."""
    box = page.locator(f".{key} textarea")
    await box.fill(text)
    waiter = asyncio.ensure_future(page.evaluate(RUN_AND_IDLE))
    await asyncio.sleep(0.05)  # the observer in place
    started = time.perf_counter()
    await box.press("Control+Enter")
    answered = await waiter
    return time.perf_counter() - started, answered and await box.input_value() == text


async def open_page(page, name: str) -> None:
    await page.locator('[data-testid="stSidebarNavLink"]', has_text=name).click()
    await page.wait_for_selector(f'[data-testid="stMain"] h1:has-text("{name}")', timeout=TIMEOUT_MS)
    await page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)


async def one_student(browser, url: str, number: int, rounds: int, others: list[str], results: dict) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 720})
    context.set_default_timeout(TIMEOUT_MS)  # thirty first loads at once take longer than Playwright's 30 s
    page = await context.new_page()
    mine = results[number] = {"times": [], "lost": 0, "errors": 0, "leaks": [], "failed": None}
    await asyncio.sleep(number * 0.5)  # a class does not click at the same millisecond
    await page.goto(url, timeout=TIMEOUT_MS)
    await page.locator(".st-key-sign_in_code input").fill(CODE)
    await page.locator(".st-key-sign_in_name input").fill(student(number))
    await page.locator(".st-key-sign_in_word input").fill(WORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_selector('[data-testid="stSidebarNavLink"]', timeout=TIMEOUT_MS)
    for round_ in range(rounds):
        for name, key in TEXT_AREAS.items():
            await open_page(page, name)
            seconds, answered = await change(page, key, f"{student(number)} round {round_}: to be or not to be")
            mine["times"].append(seconds)
            mine["lost"] += not answered
            mine["errors"] += await page.locator('[data-testid="stException"]').count()
    await open_page(page, "Train")
    shown = await page.locator('[data-testid="stMain"]').inner_text()  # the table is drawn on a canvas:
    if await page.locator(".st-key-train_pick").count():  # the runs to pick from are every run the page lists
        await page.locator(".st-key-train_pick").click()
        shown += " ".join(await page.locator('[role="option"]').all_inner_texts())
    mine["leaks"] = [run for run in others if run in shown and run != f"bench-{number:02d}"]
    mine["own_run_shown"] = f"bench-{number:02d}" in shown
    await context.close()


async def class_session(url: str, students: int, rounds: int, owners: list[int]) -> dict:
    results: dict[int, dict] = {}
    others = [f"bench-{n:02d}" for n in owners]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        outcomes = await asyncio.gather(*(one_student(browser, url, n, rounds, others, results)
                                          for n in range(students)), return_exceptions=True)
        for number, outcome in enumerate(outcomes):
            if isinstance(outcome, Exception):  # a student who could not finish: counted, shown, not fatal
                results[number]["failed"] = f"{type(outcome).__name__}: {str(outcome).splitlines()[0]}"
        await browser.close()
    return results


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2, help="times each student goes round the three pages")
    args = parser.parse_args()
    os.environ.update(LM_CLASSROOM="1", LM_ACCESS_CODE=CODE, LM_TEACHER_PASSWORD=PASSWORD, LM_TRAINING_SLOTS="2")
    home = Path(tempfile.mkdtemp(prefix="classroom-load-"))
    owners = [0, 1, 2]  # two train, the third waits in line
    with serve_app(home) as url:
        training = start_training(home / "runs", owners)
        try:
            started = time.perf_counter()
            results = asyncio.run(class_session(url, args.students, args.rounds, owners))
            wall = time.perf_counter() - started
            states = {}
            for number in owners:
                status = home / "runs" / "_students" / student(number) / "runs" / f"bench-{number:02d}" / "status.json"
                record = json.loads(status.read_text()) if status.is_file() else {}
                states[student(number)] = f"{record.get('state')} (step {record.get('step')}, place {record.get('position')})"
        finally:
            for process in training:
                process.terminate()
            for process in training:
                process.wait(timeout=60)
    times = [t for r in results.values() for t in r["times"]]
    print(f"{args.students} students in Chromium, {args.rounds} rounds of Tokenizer, Attention, Generate; "
          f"{len(times)} widget changes in {wall:.0f} s; {os.cpu_count()} CPUs")
    if times:
        print(f"change to idle: p50 {percentile(times, 50):.2f} s, p95 {percentile(times, 95):.2f} s, "
              f"max {max(times):.2f} s")
    print(f"lost (no rerun or text gone): {sum(r['lost'] for r in results.values())}; "
          f"error boxes: {sum(r['errors'] for r in results.values())}")
    failed = {n: r["failed"] for n, r in results.items() if r["failed"]}
    print(f"students who could not finish: {len(failed)}", *(f"  {student(n)}: {e}" for n, e in failed.items()), sep="\n")
    print(f"runs of others seen on a Train page: {sum(len(r['leaks']) for r in results.values())}; "
          f"owners seeing their own run: {sum(r.get('own_run_shown', False) for r in results.values())} of {len(owners)}")
    print("training line at the end:", "; ".join(f"{k}: {v}" for k, v in states.items()))


if __name__ == "__main__":
    main()
