"""The run manager: start `python -m lm train` as a child process writing a run folder,
find runs again after a refresh or an app restart, tell their true state, stop and
delete them. The trainer writes the folder; everything here only reads it, except
launch.json (how and when the process was started) which is ours.

A run's state is what status.json says, checked against the process itself, since a
killed process cannot update its status:
starting (launched, not training yet), running, finished, stopped, failed (with the
error), died (status says running but the process is gone)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from explorer.paths import check_name, runs_root
from lm.plan import RunPlan
from lm.tokenizer import TokenizerError, load_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILE, LAUNCH_FILE, STATUS_FILE, LOG_FILE, DATA_FILE = (
    "train_config.json", "launch.json", "status.json", "train.log", "data.txt",
)
ACTIVE_STATES = ("starting", "running")
STALE_AFTER_S = 600  # only where the process cannot be checked (no /proc): a heartbeat this old means gone


class RunError(ValueError):
    """A run that cannot be started, found or deleted; the message says why."""


@dataclass(frozen=True)
class RunInfo:
    name: str
    folder: Path
    state: str  # starting | running | finished | stopped | failed | died
    step: int = 0
    max_steps: int | None = None
    error: str | None = None
    best_val_loss: float | None = None
    started: float | None = None  # unix time
    stop_requested: bool = False
    options: dict = field(default_factory=dict)  # the TrainConfig it was started with

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def has_checkpoint(self) -> bool:
        return (self.folder / "config.json").is_file() and (self.folder / "model.safetensors").is_file()


# --- starting, finding, stopping, deleting ------------------------------------------

_children: dict[int, subprocess.Popen] = {}  # processes this server started, so it can reap them


def run_folder(name: str) -> Path:
    try:
        return runs_root() / check_name(name)
    except ValueError as exc:
        raise RunError(f"{name!r} is not a usable run name: {exc}") from None


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a new run, or None."""
    try:
        folder = run_folder(name)
    except RunError as exc:
        return str(exc)
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
    problem = name_problem(name)
    if problem:
        raise RunError(problem)
    folder = run_folder(name)
    data = str((folder / DATA_FILE).resolve()) if plan.text is not None else plan.config.data
    cfg = replace(plan.config, out=str(folder.resolve()), data=data)
    text, processes = plan.text, plan.processes
    try:
        folder.mkdir(parents=True)
    except FileExistsError:  # another session took the name a moment ago
        raise RunError(f"a run named {name!r} already exists: choose another name") from None
    if text is not None:
        (folder / DATA_FILE).write_text(text, encoding="utf-8")
    config_path = folder / CONFIG_FILE
    config_path.write_text(json.dumps(asdict(cfg), indent=2), encoding="utf-8")
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] if processes > 1 else []
    command = [sys.executable, *launcher, "-m", "lm", "train", "--config", str(config_path.resolve()), "--out", cfg.out]
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    try:
        with open(folder / LOG_FILE, "wb") as log:
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise RunError(f"could not start the training process: {exc}") from None
    _children[process.pid] = process
    _write_json(folder / LAUNCH_FILE, {"pid": process.pid, "started": time.time(), "command": command, "processes": processes})
    return run_info(folder)


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Every run under the root (a folder with launch.json or status.json), newest first."""
    root = runs_root() if root is None else root
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if (folder / LAUNCH_FILE).is_file() or (folder / STATUS_FILE).is_file():
            try:
                found.append(run_info(folder))
            except RunError:  # deleted meanwhile
                continue
    return sorted(found, key=lambda r: r.started or 0, reverse=True)


def run_info(folder: Path) -> RunInfo:
    if not folder.is_dir():
        raise RunError(f"there is no run named {folder.name!r} (any more)")
    launch = _read_json(folder / LAUNCH_FILE) or {}
    status = _read_json(folder / STATUS_FILE)
    error = None
    if status is None:
        state, error = _before_training(folder, launch)
        status = {}
    else:
        state = status.get("state", "failed")
        if state == "running" and not _alive(status, folder):
            status = _read_json(folder / STATUS_FILE) or status  # it may have finished a moment ago
            state = status.get("state", "failed")
            if state == "running":
                kept = "; the last checkpoint it saved is kept" if (folder / "model.safetensors").is_file() else ""
                state, error = "died", (
                    "the training process is gone without saying why (killed, out of memory, or the machine "
                    f"restarted){kept}"
                )
        error = status.get("error") or error
    return RunInfo(
        name=folder.name, folder=folder, state=state, step=status.get("step", 0), max_steps=status.get("max_steps"),
        error=error, best_val_loss=status.get("best_val_loss"),
        started=launch.get("started") or folder.stat().st_mtime, stop_requested="stop_requested" in launch,
        options=_read_json(folder / CONFIG_FILE) or {},
    )


def stop_run(name: str) -> bool:
    """Ask a run to stop: SIGTERM to its process group; it saves a checkpoint and marks
    itself stopped. False when it was not running."""
    folder = run_folder(name)
    info = run_info(folder)
    pid = _pid(folder)
    if not info.active or pid is None:
        return False
    launch = _read_json(folder / LAUNCH_FILE)
    if launch is not None:  # a run killed before training began has no status to say it was stopped
        _write_json(folder / LAUNCH_FILE, {**launch, "stop_requested": time.time()})
    _signal(pid, signal.SIGTERM)
    return True


def delete_run(name: str, timeout: float = 10.0) -> None:
    """Remove a run folder and everything in it, killing its process first (nothing is
    worth saving). Only a run folder directly inside the runs root."""
    folder = run_folder(name)
    root, target = runs_root().resolve(), folder.resolve()
    if target.parent != root or not target.is_dir():
        raise RunError(f"no run named {name!r} in {runs_root()}")
    if not ((target / LAUNCH_FILE).is_file() or (target / STATUS_FILE).is_file()):
        raise RunError(f"{name!r} is not a training run (no launch.json or status.json); it is left alone")
    pid = _pid(target)
    if pid is not None and run_info(target).active:
        _signal(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while _process_alive(pid, target.name) and time.monotonic() < deadline:
            time.sleep(0.05)
    shutil.rmtree(target)


# --- reading what the trainer writes ---------------------------------------------------


def read_metrics(folder: Path) -> list[dict]:
    """metrics.jsonl as records (shared and cached: do not modify them)."""
    return read_jsonl(folder / "metrics.jsonl")


def read_samples(folder: Path) -> list[dict]:
    return read_jsonl(folder / "samples.jsonl")


def read_jsonl(path: Path) -> list[dict]:
    """Complete lines only: the trainer may be half-way through writing the last one."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return []
    return list(_parse_jsonl(str(path), stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=64)
def _parse_jsonl(path: str, mtime_ns: int, size: int) -> tuple[dict, ...]:
    with open(path, "rb") as f:
        lines = f.read(size).split(b"\n")[:-1]  # the last piece is empty or a line still being written
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return tuple(records)


def tokenizer_vocab_size(folder: Path) -> int | None:
    """How many tokens the run's tokenizer has, once it has saved a checkpoint: a blind guess
    spreads over these (the model's vocabulary is padded past them, and padding is no token)."""
    path = folder / "tokenizer.json"
    try:
        stat = path.stat()
    except OSError:
        return None
    return _vocab_size(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _vocab_size(path: str, mtime_ns: int, size: int) -> int | None:
    try:
        return load_tokenizer(path).vocab_size
    except TokenizerError:
        return None


# --- processes ---------------------------------------------------------------------------


def _before_training(folder: Path, launch: dict) -> tuple[str, str | None]:
    """No status.json yet: the process is still loading (tokenizing, building the model) or it ended early."""
    pid = launch.get("pid")
    if pid is not None and _process_alive(pid, folder.name, launch.get("started")):
        return "starting", None
    if "stop_requested" in launch:
        return "stopped", None
    return "failed", _log_error(folder)


def _alive(status: dict, folder: Path) -> bool:
    pid = status.get("pid")
    return pid is not None and _process_alive(pid, folder.name, status.get("heartbeat"))


def _process_alive(pid: int, run_name: str, last_sign_of_life: float | None = None) -> bool:
    """Whether the run's process is alive. A child of this server is polled (which also
    reaps it); another process is looked up in /proc, which also shows a zombie or a pid
    reused by another program. Without /proc, a sign of life older than STALE_AFTER_S
    counts as gone."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)  # sessions run in threads: another may have popped it already
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # our runs run as us: another user's pid is not one
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return last_sign_of_life is None or time.time() - last_sign_of_life < STALE_AFTER_S
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        arguments = (proc / "cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False
    return state != "Z" and any(Path(os.fsdecode(a)).name == run_name for a in arguments if a)


def _pid(folder: Path) -> int | None:
    for name in (LAUNCH_FILE, STATUS_FILE):
        pid = (_read_json(folder / name) or {}).get("pid")
        if pid is not None:
            return pid
    return None


def _signal(pid: int, sig: int) -> None:
    """To the whole process group our runs lead (start_new_session); to the process alone
    for a run started elsewhere that leads none."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
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


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
