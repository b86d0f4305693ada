"""The run folder: every file a training run writes, named here once, with the writers
the trainer uses and the readers the app uses while it trains.

    config.json, tokenizer.json, model.safetensors   the checkpoint (lm.checkpoint's format)
    state.pt          optimizer and random-number state, to resume from the checkpoint
    metrics.jsonl     a line per logged step: step, train_loss, lr, ...; val_loss at evaluations
    samples.jsonl     {"step", "text"}: text the model wrote
    status.json       {"state", "pid", "started" (the process's start time), "step", "max_steps", ...}
    train.log         the training process's output
    probe.json        {"ids", "tokens"}: the fixed text the attention snapshots show
    attention/step_NNNNNNN.safetensors   "attention": [n_layer, n_head, T, T] float16
    detectors.jsonl   {"step", "scores": {detector: [[score] * n_head] * n_layer}}
    evaluation.json   a fine-tuning run's measurements before and after (lm.finetune)
    adapter.safetensors   a LoRA fine-tuning run's adapter, kept apart from the merged weights

and, in a run the app started: launch.json (how and when its process started),
train_config.json (its TrainConfig) and data.txt (the uploaded or pasted text).

Only training process 0 writes; any process may read meanwhile, so every file is
replaced whole (lm.atomic) or appended a line at a time, and the readers take
complete lines only and shrug off a missing or damaged file. The checkpoint and
state.pt are one unit behind manifest.json (lm.journal), so a kill at any moment
leaves a run that resumes on the curve it would have followed.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
from functools import lru_cache
from pathlib import Path

import psutil
import torch
from safetensors.torch import save_file

from lm.atomic import atomic_path, fsync_file, write_json
from lm.checkpoint import CONFIG_FILE, TOKENIZER_FILE, checkpoint_writers, read_config
from lm.data import DataError
from lm.journal import Writer, commit, recover, verify
from lm.tokenizer import TokenizerError, load_tokenizer

STATE_FILE = "state.pt"
METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
DETECTORS_FILE = "detectors.jsonl"
STATUS_FILE = "status.json"
LOG_FILE = "train.log"
PROBE_FILE = "probe.json"
SNAPSHOTS = "attention"  # the folder of attention snapshots: step_0000100.safetensors, ...
SNAPSHOT_TENSOR = "attention"  # the one tensor in a snapshot file
SNAPSHOT_NAME = re.compile(r"step_(\d+)\.safetensors")
LAUNCH_FILE = "launch.json"
TRAIN_CONFIG_FILE = "train_config.json"
DATA_FILE = "data.txt"
EVALUATION_FILE = "evaluation.json"
ADAPTER_FILE = "adapter.safetensors"
RECORDS = (METRICS_FILE, SAMPLES_FILE, DETECTORS_FILE)  # the step-by-step logs, one JSON object a line


def snapshot_path(folder: str | os.PathLike, step: int) -> Path:
    return Path(folder) / SNAPSHOTS / f"step_{step:07d}.safetensors"


def snapshot_steps(folder: str | os.PathLike) -> list[int]:
    """The steps the run folder has an attention snapshot of, in order (other files ignored)."""
    names = (p.name for p in (Path(folder) / SNAPSHOTS).glob("step_*.safetensors"))
    return sorted(int(m.group(1)) for m in map(SNAPSHOT_NAME.fullmatch, names) if m)


def is_training_run(folder: Path) -> bool:
    """Started by the app or written by the trainer, unlike a folder that only holds a model."""
    return (folder / LAUNCH_FILE).is_file() or (folder / STATUS_FILE).is_file()


# --- writing, as the trainer goes -----------------------------------------------------


class Run:
    """The run folder as the trainer writes it. Only the main training process writes it:
    the others hold a Run with writes=False, and its writers do nothing."""

    def __init__(self, folder: str | os.PathLike, writes: bool = True):
        self.folder, self.writes = Path(folder), writes
        self.started = psutil.Process().create_time()  # with the pid, tells this process from a later one

    def write_status(self, state: str, **extra) -> None:
        if self.writes:  # strict JSON (no NaN) for any reader
            write_json(self.folder / STATUS_FILE, {"state": state, "pid": os.getpid(), "started": self.started, **extra},
                       allow_nan=False)

    def append(self, name: str, record: dict) -> None:
        if self.writes:
            with open(self.folder / name, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def write_probe(self, ids: list[int], tokens: list[str]) -> None:
        """Once: every snapshot of the run shows this same text."""
        if self.writes and not (self.folder / PROBE_FILE).is_file():
            write_json(self.folder / PROBE_FILE, {"ids": ids, "tokens": tokens})

    def write_snapshot(self, step: int, attention: torch.Tensor) -> None:
        if self.writes:
            (self.folder / SNAPSHOTS).mkdir(exist_ok=True)
            with atomic_path(snapshot_path(self.folder, step)) as tmp:
                save_file({SNAPSHOT_TENSOR: attention.contiguous()}, str(tmp))

    def save(self, model, tokenizer, training: dict, state: dict, extra: dict[str, Writer] | None = None) -> None:
        """The checkpoint and state.pt to resume training from it (and any `extra` files, such as
        a LoRA adapter), switched in as one unit (lm.journal). The lines logged up to its step
        reach the disk first: once the checkpoint is in, no kill can lose them, and resuming
        drops only lines of later steps."""
        if self.writes:
            for name in RECORDS:
                if (self.folder / name).is_file():
                    fsync_file(self.folder / name)
            writers = {STATE_FILE: lambda path: torch.save(state, path), **(extra or {}),
                       **checkpoint_writers(model, tokenizer, training)}
            commit(self.folder, writers, step=state["step"])

    def resume_state(self) -> dict:
        """state.pt of a whole checkpoint, with the folder set back to its step: the lines logged
        and snapshots taken after it are dropped, so the resumed curve continues cleanly. A
        checkpoint cut short after its commit point is finished first; a mixed one is refused,
        naming the file (lm.journal.InconsistentSet, or DataError for a folder without manifest)."""
        if self.writes:
            recover(self.folder)
        verify(self.folder)
        state = self._read_state()
        _, training = read_config(self.folder)
        if training.get("step") != state["step"]:  # what a folder without a manifest can still check
            raise DataError(
                f"{CONFIG_FILE} in {self.folder} is of step {training.get('step')} but {STATE_FILE} of step "
                f"{state['step']}: the checkpoint is mixed (a save cut short), so it cannot be resumed exactly"
            )
        if self.writes:
            for name in RECORDS:
                self._trim(name, state["step"])
            for step in snapshot_steps(self.folder):
                if step > state["step"]:
                    snapshot_path(self.folder, step).unlink()
        return state

    def _read_state(self) -> dict:
        path = self.folder / STATE_FILE
        if not path.is_file():
            raise DataError(f"{self.folder} has no {STATE_FILE} to resume from")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and numbers only, no code
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
            raise DataError(f"{STATE_FILE} in {self.folder} is damaged ({exc}): the run cannot be resumed") from None
        if not isinstance(state, dict) or type(state.get("step")) is not int:
            raise DataError(f"{STATE_FILE} in {self.folder} is not a training state this program wrote")
        return state

    def _trim(self, name: str, step: int) -> None:
        """Keep the complete lines of steps up to `step`: a trimmed copy renamed over the file,
        never a rewrite in place, so a kill leaves the old lines or the new ones."""
        path = self.folder / name
        if not path.is_file():
            return
        *lines, tail = path.read_bytes().split(b"\n")  # the tail is empty or a line cut short
        kept = [line for line in lines if _step_of(line) <= step]
        if len(kept) < len(lines) or tail:
            with atomic_path(path, durable=True) as tmp:
                tmp.write_bytes(b"".join(line + b"\n" for line in kept))


def _step_of(line: bytes) -> float:
    """The step of a logged line; infinity for one that is not a JSON object with a whole step."""
    try:
        record = json.loads(line)
    except ValueError:
        return math.inf
    step = record.get("step", 0) if isinstance(record, dict) else None
    return step if type(step) is int else math.inf


# --- reading, while it trains ------------------------------------------------------------


def read_record(path: Path) -> dict | None:
    """A JSON object from a file (status.json, launch.json, ...); None if missing or not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# status.json's fields and their types; read_status keeps only these
STATUS_FIELDS = {"state": str, "step": int, "max_steps": int, "error": str, "best_val_loss": float, "position": int,
                 "wait_seconds": float, "pid": int, "started": float, "bytes": int, "imported": float}


def read_status(folder: Path) -> dict | None:
    """status.json with only its known fields of the right types (a number may be an int where
    a float is due): a folder may come from an archive or an older version, and every page
    reads it. None when there is none."""
    status = read_record(folder / STATUS_FILE)
    if status is None:
        return None
    kept = {}
    for key, kind in STATUS_FIELDS.items():
        value = status.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, kind):
            kept[key] = value
        elif kind is float and isinstance(value, int):
            kept[key] = float(value)
    return kept


def read_metrics(folder: Path) -> list[dict]:
    """metrics.jsonl as records (shared and cached: do not modify them)."""
    return read_jsonl(folder / METRICS_FILE)


def read_samples(folder: Path) -> list[dict]:
    return read_jsonl(folder / SAMPLES_FILE)


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


def read_probe(folder: Path) -> tuple[list[int], list[str]] | None:
    """The probe's token ids and texts; None without a readable probe.json."""
    try:
        probe = json.loads((folder / PROBE_FILE).read_text(encoding="utf-8"))
        ids, tokens = [int(i) for i in probe["ids"]], [str(t) for t in probe["tokens"]]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return (ids, tokens) if ids and len(ids) == len(tokens) else None


def tokenizer_vocab_size(folder: Path) -> int | None:
    """How many tokens the run's tokenizer has, once it has saved a checkpoint: a blind guess
    spreads over these (the model's vocabulary is padded past them, and padding is no token)."""
    path = folder / TOKENIZER_FILE
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
