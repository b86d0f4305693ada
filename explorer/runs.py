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
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from explorer.paths import check_name, runs_root
from lm.data import DataError, split_tokens
from lm.device import default_device
from lm.model import GPT, ConfigError, GPTConfig, flops_per_token, physical_memory_bytes, training_memory_bytes
from lm.tokenizer import TokenizerError, load_tokenizer
from lm.trainer import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILE, LAUNCH_FILE, STATUS_FILE, LOG_FILE, DATA_FILE = (
    "train_config.json", "launch.json", "status.json", "train.log", "data.txt",
)
ACTIVE_STATES = ("starting", "running")
STALE_AFTER_S = 600  # only where the process cannot be checked (no /proc): a heartbeat this old means gone


class RunError(ValueError):
    """A run that cannot be started, found or deleted; the message says why."""


@dataclass(frozen=True)
class Preset:
    description: str
    options: dict  # TrainConfig fields


# Timed on a 2-core CPU with one training thread and a 512-token BPE on Tiny Shakespeare:
# tiny about 30 ms a step (a minute in all), small about 250 ms (ten minutes).
PRESETS = {
    "tiny": Preset(
        "2 layers, 64 wide: about a minute on a laptop CPU",
        dict(n_layer=2, n_head=2, n_embd=64, block_size=64, batch_size=16, max_steps=2000, lr=2e-3,
             warmup_steps=100, dropout=0.0, log_every=5, eval_every=200, sample_every=200),
    ),
    "small": Preset(
        "4 layers, 128 wide: about ten minutes on a laptop CPU",
        dict(n_layer=4, n_head=4, n_embd=128, block_size=128, batch_size=16, max_steps=2500, lr=1e-3,
             warmup_steps=100, dropout=0.0, log_every=10, eval_every=250, sample_every=250),
    ),
    "medium": Preset(
        "6 layers, 384 wide (nanoGPT's Shakespeare size): for a GPU; hours on a CPU",
        dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=32, max_steps=3000, lr=1e-3,
             warmup_steps=200, dropout=0.1, log_every=10, eval_every=250, sample_every=250),
    ),
}


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


# --- planning a run ---------------------------------------------------------------


def padded_vocab_size(vocab_size: int) -> int:
    """The model's vocabulary as the trainer builds it: rounded up to a multiple of 64."""
    return -(-vocab_size // 64) * 64


def device_memory_bytes(device: str) -> int | None:
    kind = torch.device(device)
    if kind.type == "cuda":
        return torch.cuda.get_device_properties(kind.index or 0).total_memory
    return physical_memory_bytes()


def check_plan(cfg: TrainConfig, vocab_size: int, max_tokens: int | None, token_bound: bool = False) -> GPTConfig:
    """Refuse what cannot work before any process starts: the trainer's own checks, a model
    whose training (with one batch) does not fit the device's memory, and a text too short
    for the context. `max_tokens` is the text's token count, or with `token_bound` an upper
    bound on it (its length in bytes, for a BPE not trained yet); None for a synthetic task, whose
    examples are made as training goes. Raises ValueError."""
    cfg.check()
    device = default_device() if cfg.device == "auto" else cfg.device
    memory = device_memory_bytes(device)
    model = cfg.model_config(padded_vocab_size(vocab_size)).validate(memory)
    needed = training_memory_bytes(model, cfg.batch_size)  # accumulated micro-batches run one after another
    if memory and needed > memory:
        raise ConfigError(
            f"with a batch of {cfg.batch_size} sequences this needs about {needed / 2**30:.1f} GiB to train but "
            f"{device} has {memory / 2**30:.1f} GiB; use a smaller batch, context or model"
        )
    if max_tokens is None:
        return model
    try:  # the trainer's own split, on a stand-in of the right length (no memory: a broadcast view)
        split_tokens(np.broadcast_to(np.uint8(0), (max_tokens,)), cfg.val_fraction, cfg.block_size)
    except DataError as exc:
        if token_bound:
            raise DataError(f"{exc} (even counting every byte as a token, the most a byte-level BPE makes)") from None
        raise
    return model


def measure_training_flops(device: str, threads: int = 0, steps: int = 5) -> float:
    """FLOP/s this device reaches on a training step of a small reference GPT (4 layers,
    128 wide, context 128, batch 8), to turn a config's FLOPs into a rough time per step.
    The fastest of a few steps (other programs only ever slow a step down), with the CPU
    threads the run will use (0: PyTorch's default): on a busy CPU, more threads than free
    cores can make a step many times slower."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _fastest_step_flops(device, steps)
    finally:
        torch.set_num_threads(previous)


def _fastest_step_flops(device: str, steps: int) -> float:
    config = GPTConfig(vocab_size=512, block_size=128, n_layer=4, n_head=4, n_embd=128)
    model = GPT(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters())
    batch = torch.randint(0, config.vocab_size, (8, config.block_size), device=device)

    def step() -> float:
        started = time.perf_counter()
        model(batch, batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    step()  # the first step allocates and warms up
    return flops_per_token(config) * batch.numel() / min(step() for _ in range(steps))


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


def start_run(name: str, options: dict, text: str | None = None, processes: int = 1) -> RunInfo:
    """Start training in a new folder `name` under the runs root. `options` are TrainConfig
    fields; `text` (an upload or a paste) is saved in the folder and trained on. With several
    `processes`, torchrun starts them on this machine and they train together (DDP)."""
    if processes < 1:
        raise RunError(f"a run needs at least one process, not {processes}")
    problem = name_problem(name)
    if problem:
        raise RunError(problem)
    folder = run_folder(name)
    options = {**options, "out": str(folder.resolve())}
    if text is not None:
        options["data"] = str((folder / DATA_FILE).resolve())
    cfg = TrainConfig.from_dict(options).check()
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
