"""A line for training processes, with no scheduler: N slots, each a lock file in a shared
folder; a run takes a free one before it trains and holds it to the end. A run that finds
none free waits its turn, first come first served: it leaves a ticket in the folder (its
pid, start time, run folder and length), and only the ticket at the head of the line may
take a slot. Runs in line train at a lower priority (nice 10) than the server that
shares the machine, so the pages stay quick. While it waits it writes status "queued" with its place and a guess at the
wait, and SIGTERM (Stop) ends it as "stopped". A process killed while holding a slot or a
ticket frees it: the lock dies with the process, a ticket with a dead pid is dropped.

Switched on by the environment the app starts training with: LM_TRAIN_SLOTS (how many)
and LM_TRAIN_QUEUE (the folder)."""

from __future__ import annotations

import heapq
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil
from filelock import FileLock, Timeout

from lm.atomic import write_json
from lm.run_folder import Run, read_record, read_status

SLOTS_ENV, QUEUE_ENV = "LM_TRAIN_SLOTS", "LM_TRAIN_QUEUE"
TICKET_SUFFIX, HOLDER_SUFFIX = ".ticket", ".holder"
POLL_S = 0.5
NICENESS = 10
START_TOLERANCE_S = 1.0


class StoppedWhileQueued(SystemExit):
    """SIGTERM or Ctrl-C before the run had a slot: it ends, marked stopped, having done nothing."""


@dataclass(frozen=True)
class Holder:
    """A run training in a slot: how far it is and how long it has had the slot."""

    step: int
    max_steps: int
    seconds: float


def estimate_wait(slots: int, holders: list[Holder], ahead: list[int]) -> float | None:
    """Seconds until a run with the runs `ahead` of it in line (their max_steps) gets a slot,
    if the holders keep their pace and the runs ahead train at the holders' mean pace; None
    while no holder has trained a step (no pace to go on)."""
    paces = [h.seconds / h.step for h in holders if h.step > 0]
    if not paces:
        return 0.0 if len(holders) < slots and not ahead else None
    pace = sum(paces) / len(paces)
    free_at = [max(0, h.max_steps - h.step) * (h.seconds / h.step if h.step else pace) for h in holders]
    free_at += [0.0] * max(0, slots - len(holders))
    heapq.heapify(free_at)
    for steps in ahead:
        heapq.heappush(free_at, heapq.heappop(free_at) + steps * pace)
    return free_at[0]


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@contextmanager
def training_slot(out: str | os.PathLike, max_steps: int) -> Iterator[None]:
    """Hold a slot for the block (at once without LM_TRAIN_SLOTS), waiting in line for it."""
    slots, folder = int(os.environ.get(SLOTS_ENV) or 0), os.environ.get(QUEUE_ENV)
    if slots < 1 or not folder:
        yield
        return
    queue = Path(folder)
    queue.mkdir(parents=True, exist_ok=True)
    os.nice(NICENESS)  # a shared server's pages answer first; training takes the CPU time they leave
    lock = _wait_for_slot(queue, slots, Run(out), max_steps)
    holder = Path(f"{lock.lock_file}{HOLDER_SUFFIX}")
    try:
        write_json(holder, {"folder": str(Path(out).resolve()), "since": time.time(), "max_steps": max_steps})
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def _wait_for_slot(queue: Path, slots: int, run: Run, max_steps: int) -> FileLock:
    me = _ticket(queue, run, max_steps)
    stop: list[int] = []
    handlers = {s: signal.signal(s, lambda number, frame: stop.append(number)) for s in (signal.SIGTERM, signal.SIGINT)}
    shown = None
    try:
        while not stop:
            line = _line(queue)
            position = next((i for i, (path, _) in enumerate(line, 1) if path == me), len(line) + 1)
            if position == 1:
                lock = _free_slot(queue, slots)
                if lock is not None:
                    return lock
            wait = estimate_wait(slots, _holders(queue, slots), [steps for _, steps in line[: position - 1]])
            status = (position, None if wait is None else round(wait, -1))
            if status != shown:
                run.write_status("queued", step=0, max_steps=max_steps, position=position, wait_seconds=status[1])
                shown = status
            time.sleep(POLL_S)
        run.write_status("stopped", step=0, max_steps=max_steps)
        raise StoppedWhileQueued(0)
    finally:
        me.unlink(missing_ok=True)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _ticket(queue: Path, run: Run, max_steps: int) -> Path:
    path = queue / f"{time.time_ns():020d}-{os.getpid()}{TICKET_SUFFIX}"
    write_json(path, {"pid": os.getpid(), "started": run.started, "folder": str(run.folder), "max_steps": max_steps})
    return path


def _line(queue: Path) -> list[tuple[Path, int]]:
    """The tickets of waiting processes in order, each with its run's length; dead ones removed."""
    line = []
    for path in sorted(queue.glob(f"*{TICKET_SUFFIX}")):
        record = read_record(path)
        if record is None or not _alive(record):
            if record is not None or not path.exists():  # half-written ones are a moment old: left
                path.unlink(missing_ok=True)
            continue
        line.append((path, int(record.get("max_steps") or 0)))
    return line


def _alive(record: dict) -> bool:
    try:
        process = psutil.Process(int(record["pid"]))
        return abs(process.create_time() - float(record["started"])) <= START_TOLERANCE_S and \
            process.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def _free_slot(queue: Path, slots: int) -> FileLock | None:
    for number in range(slots):
        lock = FileLock(queue / f"slot-{number}.lock", timeout=0)
        try:
            lock.acquire()
        except Timeout:
            continue
        return lock
    return None


def _holders(queue: Path, slots: int) -> list[Holder]:
    """The runs in the slots now, from the records they left beside their locks."""
    holders = []
    for number in range(slots):
        record = read_record(queue / f"slot-{number}.lock{HOLDER_SUFFIX}")
        if record is None:
            continue
        status = read_status(Path(str(record.get("folder", "")))) or {}
        step = status.get("step") if status.get("state") == "running" else 0
        try:
            holders.append(Holder(int(step or 0), int(record["max_steps"]), max(0.0, time.time() - float(record["since"]))))
        except (KeyError, TypeError, ValueError):
            continue
    return holders


def queued_message(position: int, wait_seconds: float | None) -> str:
    """'3rd in line, about 2 min' for a page or a log."""
    if wait_seconds is None:
        about = "waiting for the runs ahead to show their pace"
    elif wait_seconds < 60:
        about = "about a minute or less"
    else:
        about = f"about {round(wait_seconds / 60)} min"
    return f"{ordinal(position)} in line, {about}"
