"""A class on one server: N students (30 by default) sign in to the app in classroom mode and
work on the Tokenizer, Attention and Generate pages while the training line runs: three
runs started, two training in the two slots, one waiting. Most students are websocket
clients (benchmarks/streamlit_client.py: a Streamlit session without a browser, as a laptop
of its own costs the server); a few are Chromium, so the real frontend is in the mix too.

Prints the time from a widget change to the page idle again (p50, p95, max; per page and in
all), checks that nothing was lost (every change answered, and answered with what it asked
for: the token count of the new text, the head chosen, the new prompt's generation; no error
box) and that no student's Train page shows another student's run. Exits with status 1 when
a student could not sign in or finish, a change was lost or a run leaked.

    .venv/bin/python benchmarks/classroom_load.py [--students 30] [--browsers 3] [--rounds 3] [--think 3]

The app runs with its own folders (the browser tests' server); the benchmark's clients run on
the same machine, so on a shared machine the figures include whatever else the CPUs are doing
(the load average is printed before and after)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.async_api import async_playwright  # noqa: E402
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402

from benchmarks.streamlit_client import FINAL, ClientError, StreamlitClient  # noqa: E402
from lm.slots import QUEUE_ENV, SLOTS_ENV  # noqa: E402
from lm.tokenizer import load_tokenizer  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, serve_app  # noqa: E402
from tests.helpers import TINY_RUN  # noqa: E402

CODE, PASSWORD, WORD = "owl-42", "hedgehog-teacher", "sesame"
DEMO = REPO / "models" / "shakespeare-demo"  # the bundled model every student's Attention and Generate pages open
TIMEOUT_S = 300  # thirty first loads at once on two cores take minutes
PAGES = ("Tokenizer", "Attention", "Generate")


def student(number: int) -> str:
    return f"student-{number:02d}"


def run_name(number: int) -> str:
    return f"bench-{number:02d}"


def start_training(runs: Path, owners: list[int]) -> list[subprocess.Popen]:
    """Runs in these students' workspaces, through the line for the two slots (as the app starts them)."""
    env = {**os.environ, SLOTS_ENV: "2", QUEUE_ENV: str(runs / "_queue"), "PYTHONPATH": str(REPO)}
    corpus = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
    options = {**TINY_RUN, "max_steps": 1_000_000, "sample_every": 500, "eval_every": 200, "threads": 1}
    processes = []
    for number in owners:
        out = runs / "_students" / student(number) / "runs" / run_name(number)
        out.mkdir(parents=True)
        flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
        processes.append(subprocess.Popen([sys.executable, "-m", "lm", "train", f"--data={corpus}", f"--out={out}", *flags],
                                          cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1)  # in this order in line
    return processes


class Record:
    """One student's figures: seconds per widget change by page, and what went wrong."""

    def __init__(self, client: str):
        self.client, self.times, self.lost, self.errors = client, defaultdict(list), 0, 0
        self.leaks: list[str] = []
        self.own_run_shown, self.failed = False, None

    def change(self, page: str, seconds: float, answered: bool) -> None:
        self.times[page].append(seconds)
        self.lost += not answered


# --- A student on a websocket -------------------------------------------------------------------

class WebsocketStudent:
    """Signs in, then goes round the three pages changing widgets; each change is checked
    against what the rerun drew, so a rerun that ignored the change counts as lost."""

    def __init__(self, client: StreamlitClient, number: int, record: Record, think: float, tokenizer):
        self.client, self.number, self.record, self.think, self.tokenizer = client, number, record, think, tokenizer
        self.random = random.Random(number)

    async def pause(self) -> None:
        """A student reads what changed before the next change: `think` seconds on average."""
        await asyncio.sleep(self.random.uniform(0.5, 1.5) * self.think)

    async def change(self, page: str, changes: dict, answered) -> None:
        seconds = await self.client.rerun(changes, TIMEOUT_S)
        self.record.errors += len(self.client.page.of_kind("exception"))
        self.record.change(page, seconds, bool(answered()))
        await self.pause()

    def shows(self, pattern: str) -> re.Match | None:
        return next((m for text in self.client.page.texts() if (m := re.search(pattern, text))), None)

    async def sign_in(self) -> None:
        c = self.client
        await c.rerun(timeout=TIMEOUT_S)  # the first page: the sign-in form
        form = {**c.set_text("sign_in_code", CODE), **c.set_text("sign_in_name", student(self.number)),
                **c.set_text("sign_in_word", WORD), **c.click("Sign in")}
        await c.rerun(form, TIMEOUT_S)
        if not self.shows(f"Signed in as 🎒 {student(self.number)}$") or "Tokenizer" not in c.pages:
            raise ClientError(f"{student(self.number)} could not sign in: the page shows {c.page.texts()[:3]}")

    async def tokenizer_page(self, text: str) -> None:
        await self.client.open("Tokenizer")
        tokens = len(self.tokenizer.encode(text))
        await self.change("Tokenizer", self.client.set_text("tok_text", text),
                          lambda: self.shows(rf"· {tokens:,} tokens ·") and f"{len(text):,}" in self.client.page.texts())

    async def attention_page(self, text: str, head: int) -> None:
        c = self.client
        await c.open("Attention")
        await self.change("Attention", c.choose("att_head", str(head)),  # the map's title names the head
                          lambda: any(f"head {head}\"" in chart.spec for chart in c.page.of_kind("plotly_chart")))
        tokens = len(self.tokenizer.encode(text))
        await self.change("Attention", c.set_text("att_text", text), lambda: self.shows(rf"reads {tokens} tokens:"))

    async def generate_page(self, prompt: str) -> None:
        c = self.client
        await c.open("Generate")
        await self.change("Generate", c.set_text("gen_prompt", prompt), lambda: True)  # nothing to see until Generate
        # Full speed: the default pace (20 tokens/s) holds each token back on purpose, which is not the server's cost.
        await self.change("Generate", c.choose("gen_pace", "full speed"), lambda: True)
        await self.change("Generate", c.click("Generate"), lambda: self.shows(r"\d+ new tokens? in")
                          and any(f">{prompt}<" in html.body for html in c.page.of_kind("html")))

    async def train_page(self) -> str:
        """Everything the Train page sends this student (its table's data and the run picker's options included)."""
        await self.client.open("Train")
        return b"".join(proto.SerializeToString() for _, proto in self.client.page.elements.values()).decode(
            "utf-8", "replace")


async def websocket_student(url: str, number: int, rounds: int, think: float, tokenizer, record: Record) -> str:
    await asyncio.sleep(number * 0.5)  # a class does not click at the same millisecond
    async with StreamlitClient(url, student(number)) as client:
        one = WebsocketStudent(client, number, record, think, tokenizer)
        await one.sign_in()
        for round_ in range(rounds):
            text = f"{student(number)} round {round_}: to be or not to be"
            await one.tokenizer_page(text)
            await one.attention_page(text, head=(number + round_ + 1) % 4)  # the demo has 4 heads; 0 is the default
            await one.generate_page(text)
        return await one.train_page()


# --- A student in Chromium ------------------------------------------------------------------------

TEXT_AREAS = {"Tokenizer": "st-key-tok_text", "Attention": "st-key-att_text", "Generate": "st-key-gen_prompt"}
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def watch_runs(page) -> asyncio.Queue:
    """The ends of the page's script runs, read from the frames its websocket receives: the same
    mark as the websocket clients' (a quick run can go running and back within one render, and
    then the page's data-test-script-state never shows it)."""
    ends: asyncio.Queue = asyncio.Queue()

    def frame(payload) -> None:
        if isinstance(payload, bytes):
            msg = ForwardMsg()
            msg.ParseFromString(payload)
            if msg.WhichOneof("type") == "script_finished" and msg.script_finished in FINAL:
                ends.put_nowait(time.perf_counter())

    page.on("websocket", lambda socket: socket.on("framereceived", frame))
    return ends


async def browser_change(page, ends: asyncio.Queue, key: str, text: str) -> tuple[float, bool]:
    """Type into a text area and commit it; seconds until the run it starts ends, and whether it ran."""
    box = page.locator(f".{key} textarea")
    await box.fill(text)
    while not ends.empty():
        ends.get_nowait()
    started = time.perf_counter()
    await box.press("Control+Enter")
    try:
        finished = await asyncio.wait_for(ends.get(), TIMEOUT_S)
    except TimeoutError:
        return time.perf_counter() - started, False
    return finished - started, await box.input_value() == text


async def browser_open(page, name: str) -> None:
    await page.locator('[data-testid="stSidebarNavLink"]', has_text=name).click()
    await page.wait_for_selector(f'[data-testid="stMain"] h1:has-text("{name}")')
    for _ in range(20):  # idle and staying idle: a page may rerun once more after it first draws
        await page.wait_for_selector(IDLE)
        await asyncio.sleep(0.5)
        if await page.locator(IDLE).count():
            break


async def browser_student(browser, url: str, number: int, rounds: int, think: float, record: Record) -> str:
    context = await browser.new_context(viewport={"width": 1280, "height": 720})
    context.set_default_timeout(TIMEOUT_S * 1000)
    page = await context.new_page()
    ends = watch_runs(page)
    await asyncio.sleep(number * 0.5)
    await page.goto(url)
    await page.locator(".st-key-sign_in_code input").fill(CODE)
    await page.locator(".st-key-sign_in_name input").fill(student(number))
    await page.locator(".st-key-sign_in_word input").fill(WORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_selector('[data-testid="stSidebarNavLink"]')
    pause = random.Random(number)
    for round_ in range(rounds):
        for name, key in TEXT_AREAS.items():
            await browser_open(page, name)
            seconds, answered = await browser_change(page, ends, key, f"{student(number)} round {round_}: to be or not to be")
            record.change(name, seconds, answered)
            record.errors += await page.locator('[data-testid="stException"]').count()
            await asyncio.sleep(pause.uniform(0.5, 1.5) * think)
    await browser_open(page, "Train")
    shown = await page.locator('[data-testid="stMain"]').inner_text()  # the table is drawn on a canvas:
    if await page.locator(".st-key-train_pick").count():  # the runs to pick from are every run the page lists
        await page.locator(".st-key-train_pick").click()
        shown += " ".join(await page.locator('[role="option"]').all_inner_texts())
    await context.close()
    return shown


# --- The class ------------------------------------------------------------------------------------

async def class_session(url: str, args, owners: list[int]) -> dict[int, Record]:
    """Every student at once; each one's Train page is checked for the others' runs at the end."""
    tokenizer = load_tokenizer(DEMO / "tokenizer.json", download=False)
    in_browser = set(range(args.students - args.browsers, args.students))
    records = {n: Record("chromium" if n in in_browser else "websocket") for n in range(args.students)}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS) if in_browser else None
        outcomes = await asyncio.gather(*(
            browser_student(browser, url, n, args.rounds, args.think, records[n]) if n in in_browser
            else websocket_student(url, n, args.rounds, args.think, tokenizer, records[n])
            for n in range(args.students)), return_exceptions=True)
        if browser:
            await browser.close()
    for number, shown in enumerate(outcomes):
        record = records[number]
        if isinstance(shown, BaseException):  # counted and shown at the end, and the script fails
            record.failed = f"{type(shown).__name__}: {str(shown).splitlines()[0] if str(shown) else ''}"
            continue
        record.leaks = [run_name(n) for n in owners if n != number and run_name(n) in shown]
        record.own_run_shown = run_name(number) in shown
    return records


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def figures(label: str, times: list[float]) -> str:
    if not times:
        return f"  {label:<22} no changes"
    return (f"  {label:<22} {len(times):4d} changes: p50 {percentile(times, 50):6.2f} s, "
            f"p95 {percentile(times, 95):6.2f} s, max {max(times):6.2f} s")


def report(records: dict[int, Record], args, owners: list[int], wall: float, loads: tuple, states: dict) -> bool:
    """Print the figures; True when nothing failed, was lost or leaked."""
    print(f"{args.students} students ({args.students - args.browsers} websocket, {args.browsers} Chromium), "
          f"{args.rounds} rounds of Tokenizer, Attention, Generate, ~{args.think:g} s between changes; "
          f"{wall:.0f} s; {os.cpu_count()} CPUs; load average before {loads[0]}, after {loads[1]}")
    print("widget change to idle (the change sent, to the end of the run that answers it):")
    everything = [t for r in records.values() for times in r.times.values() for t in times]
    for page in PAGES:
        print(figures(page, [t for r in records.values() for t in r.times[page]]))
    for client in ("websocket", "chromium"):
        print(figures(f"all, {client}", [t for r in records.values() if r.client == client for ts in r.times.values() for t in ts]))
    print(figures("all", everything))
    lost, errors = sum(r.lost for r in records.values()), sum(r.errors for r in records.values())
    failed = {n: r.failed for n, r in records.items() if r.failed}
    leaks = sum(len(r.leaks) for r in records.values())
    print(f"lost (no rerun, or not what was asked): {lost}; error boxes: {errors}")
    print(f"students who could not finish: {len(failed)}", *(f"  {student(n)}: {e}" for n, e in failed.items()), sep="\n")
    print(f"runs of others seen on a Train page: {leaks}; owners seeing their own run: "
          f"{sum(records[n].own_run_shown for n in owners)} of {len(owners)}")
    print("training line at the end:", "; ".join(f"{k}: {v}" for k, v in states.items()))
    return not (lost or errors or failed or leaks) and all(records[n].own_run_shown for n in owners)


def line_states(runs: Path, owners: list[int]) -> dict[str, str]:
    states = {}
    for number in owners:
        status = runs / "_students" / student(number) / "runs" / run_name(number) / "status.json"
        record = json.loads(status.read_text()) if status.is_file() else {}
        states[student(number)] = f"{record.get('state')} (step {record.get('step')}, place {record.get('position')})"
    return states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--browsers", type=int, default=3, help="how many of the students are Chromium")
    parser.add_argument("--rounds", type=int, default=3, help="times each student goes round the three pages")
    parser.add_argument("--think", type=float, default=3.0, help="mean seconds a student waits between changes")
    args = parser.parse_args()
    args.browsers = min(args.browsers, args.students)
    os.environ.update(LM_CLASSROOM="1", LM_ACCESS_CODE=CODE, LM_TEACHER_PASSWORD=PASSWORD, LM_TRAINING_SLOTS="2")
    home = Path(tempfile.mkdtemp(prefix="classroom-load-"))
    # Two train, the third waits in line; the first, the last student, is in Chromium when there are browsers,
    # so the leak check reads a training run's Train page in both kinds of client and a waiting one's.
    owners = list(dict.fromkeys([args.students - 1, 0, 1]))
    with serve_app(home) as url:
        training = start_training(home / "runs", owners)
        try:
            before, started = os.getloadavg(), time.perf_counter()
            records = asyncio.run(class_session(url, args, owners))
            wall, after = time.perf_counter() - started, os.getloadavg()
            states = line_states(home / "runs", owners)
        finally:
            for process in training:
                process.terminate()
            for process in training:
                process.wait(timeout=60)
    loads = tuple(" ".join(f"{x:.1f}" for x in load) for load in (before, after))
    if not report(records, args, owners, wall, loads, states):
        print("FAILED: see above", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
