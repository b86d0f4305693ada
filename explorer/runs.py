"""The run manager: start `python -m lm train` as a child process writing a run folder,
find runs again after a refresh or an app restart, tell their true state, stop and
delete them. The trainer writes the folder; everything here only reads it, except
launch.json (how and when the process was started) which is ours.

A run's state is what status.json says, checked against the process itself (its pid and
start time, so a pid the system has since given another program is not taken for it),
since a killed process cannot update its status:
starting (launched, not training yet), running, finished, stopped, failed (with the
error), died (status says running but the process is gone); imported (unpacked from an
archive by explorer.run_archive, which writes that status: no process of ours, none to stop)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import psutil

from explorer import workspace
from explorer.paths import check_name, runs_root
from explorer.run_recorded import recorded
from lm.atomic import write_json, write_text
from lm.checkpoint import WEIGHTS_FILE, has_checkpoint
from lm.plan import RunPlan
from lm.slots import QUEUE_ENV, SLOTS_ENV, queued_message
from lm.run_folder import (
    DATA_FILE, LAUNCH_FILE, LOG_FILE, STATE_FILE, STATUS_FILE, TRAIN_CONFIG_FILE, is_training_run, read_record,
    read_status,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
ACTIVE_STATES = ("starting", "queued", "running")
START_TOLERANCE_S = 1.0  # a process's start time, read twice, agrees far closer; a pid reused later does not


class RunError(ValueError):
    """A run that cannot be started, found or deleted; the message says why."""


@dataclass(frozen=True)
class RunInfo:
    name: str
    folder: Path
    state: str  # starting | queued | running | finished | stopped | failed | died | imported
    step: int = 0
    max_steps: int | None = None
    error: str | None = None
    best_val_loss: float | None = None
    started: float | None = None  # unix time
    stop_requested: bool = False
    options: dict = field(default_factory=dict)  # the TrainConfig it was started with (explorer.run_recorded)
    model: dict = field(default_factory=dict)  # its model's n_layer, n_head, n_embd and block_size, as far as known
    queue_position: int | None = None  # while queued: 1 is next
    wait_seconds: float | None = None  # while queued: a guess, None while there is nothing to guess from

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def queue_note(self) -> str | None:
        """'3rd in line, about 2 min' while it waits for a training slot."""
        return queued_message(self.queue_position, self.wait_seconds) if self.state == "queued" else None

    @property
    def has_checkpoint(self) -> bool:
        return has_checkpoint(self.folder)


# --- starting, finding, stopping, deleting ------------------------------------------

_children: dict[int, subprocess.Popen] = {}  # processes this server started, so it can reap them


def run_folder(name: str) -> Path:
    """The folder of the run `name`: in the runs root of the person on this page; the teacher
    names a student's run 'student/run' (explorer.workspace)."""
    try:
        return workspace.locate_run(name)
    except ValueError as exc:
        raise RunError(f"{name!r} is not a usable run name: {exc}") from None


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a new run, or None. A new run is always the person's own: the
    teacher's 'student/run' names open runs, never make them."""
    try:
        folder = runs_root() / check_name(name)
    except ValueError as exc:
        return f"{name!r} is not a usable run name: {exc}"
    return f"a run named {name!r} already exists: choose another name" if folder.exists() else None


def free_name(base: str) -> str:
    """base-1, base-2, …: the first not taken yet."""
    number = 1
    while (runs_root() / f"{base}-{number}").exists():
        number += 1
    return f"{base}-{number}"


def start_run(name: str, plan: RunPlan) -> RunInfo:
    """Start training `plan` (lm.plan.plan_run) in a new folder `name` under the runs root: its
    config as it is, told where the folder is (and the text kept in it, if the plan has one);
    torchrun starts several processes, which train together (DDP)."""
    if plan.problem:
        raise RunError(plan.problem)
    problem = name_problem(name) or workspace.run_limit_problem(list_runs(runs_root()))
    if problem:
        raise RunError(problem)
    folder = run_folder(name)
    data = str((folder / DATA_FILE).resolve()) if plan.text is not None else plan.config.data
    cfg = replace(plan.config, out=str(folder.resolve()), data=data,
                  threads=plan.config.threads or workspace.threads_per_run())  # slots share the cores
    text, processes = plan.text, plan.processes
    try:
        folder.mkdir(parents=True)
    except FileExistsError:  # another session took the name a moment ago
        raise RunError(f"a run named {name!r} already exists: choose another name") from None
    if text is not None:
        write_text(folder / DATA_FILE, text)
    config_path = folder / TRAIN_CONFIG_FILE
    write_json(config_path, asdict(cfg), indent=2)
    try:
        return launch(folder, ["train", "--config", str(config_path.resolve()), "--out", cfg.out], processes, "wb")
    except RunError:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def continue_problem(info: RunInfo) -> str | None:
    """Why a run cannot train on from where it ended, or None."""
    if not workspace.can_manage(info):
        return "this run is not yours: only its owner and the teacher may continue it"
    if info.active:
        return f"{info.name!r} is still training: stop it first, or wait for it to finish"
    if info.state == "imported":  # its training config names another machine's files (and any path at all)
        return f"{info.name!r} was imported: it can be watched and compared, not trained on here"
    if limit := workspace.training_limit_problem(list_runs(runs_root())):
        return limit
    if not (info.folder / STATE_FILE).is_file():
        return (f"{info.name!r} has no training state to continue from (an imported model, or a run that ended "
                "before its first checkpoint)")
    return None


def continue_run(name: str, max_steps: int) -> RunInfo:
    """Train a stopped or finished run on, in its own folder, up to `max_steps` (`lm train
    --resume`, or `lm finetune METHOD --resume` for a run started as a fine-tune): the trainer drops
    whatever was logged past its checkpoint, so the curves go on from there without a gap or a
    repeated step. The log goes on after the first part's."""
    info = run_info(run_folder(name))
    problem = continue_problem(info)
    if problem is None and max_steps <= info.step:
        problem = f"{name!r} has trained {info.step:,} steps already: continue to more steps than that"
    if problem:
        raise RunError(problem)
    launched = read_record(info.folder / LAUNCH_FILE) or {}
    command = launched.get("command") or []
    started_as = command[command.index("lm") + 1 : command.index("lm") + 3] if "lm" in command else []
    out = str(info.folder.resolve())
    (info.folder / STATUS_FILE).unlink(missing_ok=True)  # "starting" until the trainer writes its own
    return launch(info.folder, [*(started_as if started_as[:1] == ["finetune"] else ["train"]), "--resume", "--out", out,
                                "--max-steps", str(max_steps)], launched.get("processes", 1), "ab")


def launch(folder: Path, arguments: list[str], processes: int = 1, log_mode: str = "wb") -> RunInfo:
    """`python -m lm ARGUMENTS` (`train ...`, `finetune ...`; under torchrun for several processes)
    writing `folder`, recorded in its launch.json."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] if processes > 1 else []
    command = [sys.executable, *launcher, "-m", "lm", *arguments]
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    slots = workspace.training_slots() if processes == 1 else 0  # torchrun's processes would each wait
    queue = {SLOTS_ENV: str(slots), QUEUE_ENV: str(workspace.queue_folder().resolve())} if slots else {}
    try:
        with open(folder / LOG_FILE, log_mode) as log:
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1", **queue},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
    except OSError as exc:
        raise RunError(f"could not start the training process: {exc}") from None
    _children[process.pid] = process
    record = {"pid": process.pid, "started": _start_time(process.pid), "command": command, "processes": processes}
    write_json(folder / LAUNCH_FILE, record)
    return run_info(folder)


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Every run under the root (a folder with launch.json or status.json), newest first; by
    default every run the person on this page may see (explorer.workspace.run_roots)."""
    roots = [root] if root is not None else [folder for _, folder in workspace.run_roots()]
    found = []
    for folder in (f for r in roots if r.is_dir() for f in r.iterdir()):
        if is_training_run(folder):
            try:
                found.append(run_info(folder))
            except RunError:  # deleted meanwhile
                continue
    return sorted(found, key=lambda r: r.started or 0, reverse=True)


def run_info(folder: Path) -> RunInfo:
    if not folder.is_dir():
        raise RunError(f"there is no run named {folder.name!r} (any more)")
    launch = read_record(folder / LAUNCH_FILE) or {}
    status = read_status(folder)
    error = None
    if status is None:
        state, error = _before_training(folder, launch)
        status = {}
    else:
        state = status.get("state", "failed")
        if state in ("queued", "running") and _run_process(launch, status) is None:
            status = read_status(folder) or status  # it may have finished a moment ago
            state = status.get("state", "failed")
            if state in ("queued", "running"):
                kept = "; the last checkpoint it saved is kept" if (folder / WEIGHTS_FILE).is_file() else ""
                state, error = "died", (
                    "the training process is gone without saying why (killed, out of memory, or the machine "
                    f"restarted){kept}"
                )
        error = status.get("error") or error
    known = recorded(folder, status, state in ACTIVE_STATES)
    return RunInfo(
        name=workspace.run_name(folder), folder=folder, state=state, step=status.get("step", 0), max_steps=status.get("max_steps"),
        error=error, best_val_loss=known.best_val_loss,
        started=launch.get("started") or folder.stat().st_mtime, stop_requested="stop_requested" in launch,
        options=known.options, model=known.model,
        queue_position=status.get("position") if state == "queued" else None, wait_seconds=status.get("wait_seconds"),
    )


def stop_run(name: str) -> bool:
    """Ask a run to stop: SIGTERM to its process group; it saves a checkpoint and marks
    itself stopped. False when it was not running."""
    folder = run_folder(name)
    _check_manages(folder)
    launch = read_record(folder / LAUNCH_FILE)
    process = _run_process(launch or {}, read_record(folder / STATUS_FILE))
    if process is None or not run_info(folder).active:
        return False
    if launch is not None:  # a run killed before training began has no status to say it was stopped
        write_json(folder / LAUNCH_FILE, {**launch, "stop_requested": time.time()})
    _signal(process, signal.SIGTERM)
    return True


def delete_run(name: str, timeout: float = 10.0) -> None:
    """Remove a run folder and everything in it, killing its processes first (nothing is
    worth saving). Only a run folder directly inside the runs root."""
    folder = run_folder(name)
    target = folder.resolve()
    if target.parent != folder.parent.resolve() or not target.is_dir():
        raise RunError(f"there is no run named {name!r}")
    _check_manages(target)
    if not is_training_run(target):
        raise RunError(f"{name!r} is not a training run (no {LAUNCH_FILE} or {STATUS_FILE}); it is left alone")
    process = _run_process(read_record(target / LAUNCH_FILE) or {}, read_record(target / STATUS_FILE))
    if process is not None and run_info(target).active:
        try:
            doomed = [process, *process.children(recursive=True)]  # torchrun's workers lead sessions of their own
        except psutil.Error:  # it ended a moment ago
            doomed = [process]
        for member in doomed:
            _signal(member, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while any(map(_running, doomed)) and time.monotonic() < deadline:
            time.sleep(0.05)
    shutil.rmtree(target)


def _check_manages(folder: Path) -> None:
    """run_folder keeps a student in their workspace already; this says so again where it matters."""
    if not workspace.can_manage(RunInfo(folder.name, folder, "unknown")):
        raise RunError("this run is not yours: only its owner and the teacher may stop or delete it")


# --- processes ---------------------------------------------------------------------------


def _before_training(folder: Path, launch: dict) -> tuple[str, str | None]:
    """No status.json yet: the process is still loading (tokenizing, building the model) or it ended early."""
    if _process(launch) is not None:
        return "starting", None
    if "stop_requested" in launch:
        return "stopped", None
    return "failed", _log_error(folder)


def _run_process(launch: dict, status: dict | None) -> psutil.Process | None:
    """The run's process while it runs, from its launch.json and status.json records: the
    one this app launched, else the one that wrote the status (a run started from the
    command line)."""
    return _process(launch if "pid" in launch else status or {})


def _process(record: dict) -> psutil.Process | None:
    """The process a launch or status record names, if it still runs: that very process, not
    a later one the system gave its pid (its start time would differ from the record's)."""
    pid, started = record.get("pid"), record.get("started")
    if not isinstance(pid, int) or not isinstance(started, (int, float)):
        return None
    try:
        process = psutil.Process(pid)
        same = abs(process.create_time() - started) <= START_TOLERANCE_S
    except psutil.Error:  # gone, or another user's: our runs run as us
        return None
    return process if same and _running(process) else None


def _running(process: psutil.Process) -> bool:
    """Neither gone nor a zombie (ended, its exit not collected yet). A child of this server
    is collected here once it ends."""
    child = _children.get(process.pid)
    if child is not None and child.poll() is not None:
        _children.pop(process.pid, None)  # sessions run in threads: another may have popped it already
        return False
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:  # it has ended already: its status or log says why
        return None


def _signal(process: psutil.Process, sig: int) -> None:
    """To the whole process group our runs lead (start_new_session); to the process alone
    for a run started elsewhere that leads none."""
    try:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
    except (ProcessLookupError, psutil.Error):  # ended meanwhile
        pass


def _log_error(folder: Path) -> str:
    """Why a process ended before training: the CLI's `error:` line, else the log's last line."""
    try:
        with open(folder / LOG_FILE, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16_384))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        tail = ""
    lines = [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
    if errors:
        return errors[-1]
    return lines[-1] if lines else "the training process ended before it began, without a message"
