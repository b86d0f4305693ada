"""A run as a zip file: export one to hand it on (its folder, as it is on disk), import
one a classmate sent, so a class can pool runs and overlay their curves.

An archive is untrusted input. Before anything is unpacked its listing is bounded (how
many files, how big each and all together, what the person's imports may use of the disk)
and every path stays inside the new run folder; while unpacking, no file may grow past the
size the listing gave it or fail its checksum; then the checkpoint must load (its config
within the app's cost limit, lm.sizing) and every record must be what the app writes,
before the run appears. How the other machine ran it (launch.json, status.json: a pid, a
state) is not taken over: an imported run is "imported", with no process to stop."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from explorer.paths import runs_root
from explorer.run_recorded import best_val_loss
from explorer.runs import RunError, name_problem, run_folder
from lm.atomic import is_temporary, write_json
from lm.checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointError, load_checkpoint, read_config
from lm.data import human_size
from lm.run_folder import (
    DETECTORS_FILE, LAUNCH_FILE, METRICS_FILE, SAMPLES_FILE, STATUS_FILE, TRAIN_CONFIG_FILE, read_record, read_status,
)
from lm.train_config import TrainConfig

MAX_MEMBERS = 5_000  # a long run's attention snapshots number in the hundreds
MAX_MEMBER_BYTES = 768 * 2**20  # GPT-2 small's weights are 498 MB
MAX_UNPACKED_BYTES = 2**30  # one import
IMPORT_QUOTA_ENV = "LM_IMPORT_QUOTA_MB"  # what all imports in one runs root (a student's workspace) may use
DEFAULT_IMPORT_QUOTA_BYTES = 2 * 2**30
DISK_MARGIN_BYTES = 512 * 2**20  # left free on the server's disk whatever the quota says
IMPORTED = "imported"  # the state of every imported run
LEFT_OUT = {LAUNCH_FILE}  # how this machine started the process; its pid means nothing elsewhere
NOT_TAKEN = {LAUNCH_FILE, STATUS_FILE}  # another machine's process and state: replaced on import
RUN_FILES = {METRICS_FILE, WEIGHTS_FILE}  # an archive with neither is not a run
CHUNK = 2**20


def export_run(folder: Path) -> bytes:
    """The run folder as a zip, paths relative to the folder (temporary files left out)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if path.is_file() and not path.is_symlink() and relative.name not in LEFT_OUT and not is_temporary(path):
                archive.write(path, relative.as_posix())
    return buffer.getvalue()


def import_run(data: bytes, name: str) -> Path:
    """Unpack an exported run as a new run `name` under the runs root; returns its folder.
    Raises RunError saying what is wrong, leaving nothing behind."""
    problem = name_problem(name)
    if problem:
        raise RunError(problem)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise RunError("this file is not a zip archive: export a run from the Train page and import that") from None
    root = runs_root()
    with archive:
        members = _checked_members(archive)
        total = sum(info.file_size for info, _ in members)
        root.mkdir(parents=True, exist_ok=True)
        _check_room(root, total)
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=root))
        try:
            for info, target in members:
                _unpack(archive, info, staging / target)
            status = _check_run(staging)
            write_json(staging / STATUS_FILE, {**status, "state": IMPORTED, "imported": time.time(), "bytes": total})
            try:
                staging.rename(run_folder(name))
            except OSError:
                raise RunError(f"a run named {name!r} already exists: choose another name") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return run_folder(name)


def import_quota_bytes() -> int:
    """What the imports in one runs root may use together: $LM_IMPORT_QUOTA_MB, default 2 GiB."""
    value = os.environ.get(IMPORT_QUOTA_ENV, "")
    return int(value) * 2**20 if value.isdigit() else DEFAULT_IMPORT_QUOTA_BYTES


def imports_bytes(root: Path) -> int:
    """The disk the imported runs in `root` use (what their status says they unpacked to)."""
    used = 0
    for folder in (f for f in root.iterdir() if f.is_dir()) if root.is_dir() else ():
        status = read_status(folder) or {}
        if status.get("state") == IMPORTED:
            used += max(0, status.get("bytes", 0))
    return used


def _check_room(root: Path, total: int) -> None:
    """Refuse an archive that would take the imports past their quota, or the disk nearly full."""
    used, quota = imports_bytes(root), import_quota_bytes()
    if used + total > quota:
        raise RunError(
            f"this archive unpacks to {human_size(total)}, and your imported runs use {human_size(used)} of the "
            f"{human_size(quota)} imports may use: delete an imported run first"
        )
    free = shutil.disk_usage(root).free
    if total + DISK_MARGIN_BYTES > free:
        raise RunError(f"this archive unpacks to {human_size(total)} but the server's disk has only {human_size(free)} free")


def _checked_members(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Each file and where it goes inside the run folder: relative, no '..', no links, few
    enough and small enough; one enclosing folder (a zipped folder rather than its files) is
    dropped, and so are the records of another machine's process (NOT_TAKEN)."""
    files = [info for info in archive.infolist() if not info.is_dir()]
    if len(files) > MAX_MEMBERS:
        raise RunError(f"the archive holds {len(files):,} files; a run of this app has at most {MAX_MEMBERS:,}")
    for info in files:
        if info.file_size > MAX_MEMBER_BYTES:
            raise RunError(f"{info.filename!r} in the archive unpacks to {human_size(info.file_size)}; "
                           f"a run's files are at most {human_size(MAX_MEMBER_BYTES)}")
    total = sum(info.file_size for info in files)
    if total > MAX_UNPACKED_BYTES:
        raise RunError(f"the archive unpacks to {human_size(total)}; one import may unpack at most {human_size(MAX_UNPACKED_BYTES)}")
    paths = []
    for info in files:
        path = PurePosixPath(info.filename)
        if path.is_absolute() or ".." in path.parts or "\\" in info.filename or not path.parts:
            raise RunError(f"the archive holds a file outside its folder ({info.filename!r}); refusing it")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise RunError(f"the archive holds a link ({info.filename!r}); refusing it")
        paths.append(path)
    if len({p.parts[0] for p in paths}) == 1 and all(len(p.parts) > 1 for p in paths):
        paths = [PurePosixPath(*p.parts[1:]) for p in paths]
    if len(set(paths)) < len(paths):
        raise RunError("the archive holds the same file twice; refusing it")
    if not RUN_FILES & {str(p) for p in paths}:
        raise RunError("the archive holds no run: a run has metrics.jsonl and model.safetensors at its top")
    return [(info, path) for info, path in zip(files, paths) if str(path) not in NOT_TAKEN]


def _unpack(archive: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path) -> None:
    """One member, never more bytes than its listing says; a damaged one is refused by name."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with archive.open(info) as source, open(destination, "xb") as out:
            while chunk := source.read(CHUNK):
                written += len(chunk)
                if written > info.file_size:
                    raise RunError(f"{info.filename!r} in the archive is bigger than the archive says; refusing it")
                out.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise RunError(f"{info.filename!r} in the archive is damaged or lies about its size ({exc}); refusing it") from None
    if written != info.file_size:
        raise RunError(f"{info.filename!r} in the archive is smaller than the archive says; refusing it")


def _check_run(folder: Path) -> dict:
    """The checkpoint loads and every record is what the app writes, or the import is
    refused; returns what of the run's status is kept (its progress, checked)."""
    if (folder / WEIGHTS_FILE).is_file():
        try:
            load_checkpoint(folder, "cpu")
        except CheckpointError as exc:
            raise RunError(f"the run's checkpoint is damaged: {str(exc).replace(str(folder), 'the archive')}") from None
    for records, check in RECORD_CHECKS.items():
        path = folder / records
        if path.is_file():
            try:
                lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise RunError(f"{records} in the archive is damaged ({exc})") from None
            bad = next((number for number, line in enumerate(lines, 1) if not check(line)), None)
            if bad is not None:
                raise RunError(f"{records} in the archive is not what this app writes (line {bad}); refusing it")
    if (folder / TRAIN_CONFIG_FILE).is_file():
        _check_options(read_record(folder / TRAIN_CONFIG_FILE), TRAIN_CONFIG_FILE)
    try:  # the settings a command-line run's checkpoint records: the runs table shows them (explorer.run_recorded)
        settings = read_config(folder)[1].get("config")
    except CheckpointError:  # none, or unreadable and then never read as settings
        settings = None
    if settings:
        _check_options(settings, f"the training record in {CONFIG_FILE}")
    return _progress(folder)


def _check_options(options: dict | None, where: str) -> None:
    try:
        if options is None:
            raise ValueError("not a JSON object")
        TrainConfig.from_dict(options).check()
    except (ValueError, TypeError) as exc:
        raise RunError(f"{where} in the archive is not a training config of this app ({exc})") from None


def _progress(folder: Path) -> dict:
    """How far the run got, from its metrics (the archive's status.json is not taken)."""
    metrics = [json.loads(line) for line in _lines(folder / METRICS_FILE)]
    progress, best = {"step": metrics[-1]["step"] if metrics else 0}, best_val_loss(metrics)
    return progress if best is None else {**progress, "best_val_loss": best}


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] if path.is_file() else []


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _metrics_record(record) -> bool:
    return isinstance(record, dict) and _is_count(record.get("step")) and all(map(_is_number, record.values()))


def _sample_record(record) -> bool:
    return isinstance(record, dict) and _is_count(record.get("step")) and isinstance(record.get("text"), str)


def _detectors_record(record) -> bool:
    if not isinstance(record, dict) or not _is_count(record.get("step")):
        return False
    scores = record.get("scores")
    return isinstance(scores, dict) and all(isinstance(v, list) for v in scores.values())


RECORD_CHECKS = {METRICS_FILE: _metrics_record, SAMPLES_FILE: _sample_record, DETECTORS_FILE: _detectors_record}
