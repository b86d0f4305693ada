"""A run as a zip file: export one to hand it on (its folder, as it is on disk), import
one a classmate sent, so a class can pool runs and overlay their curves. An archive
is untrusted input: nothing in it may land outside the new run folder, and its
checkpoint must load before the run appears."""

from __future__ import annotations

import io
import json
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from explorer.paths import runs_root
from explorer.runs import RunError, name_problem, run_folder
from lm.atomic import is_temporary
from lm.checkpoint import WEIGHTS_FILE, CheckpointError, load_checkpoint
from lm.run_folder import LAUNCH_FILE, METRICS_FILE, SAMPLES_FILE, STATUS_FILE

MAX_UNPACKED_BYTES = 2 * 2**30
LEFT_OUT = {LAUNCH_FILE}  # how this machine started the process; its pid means nothing elsewhere
RUN_FILES = {METRICS_FILE, WEIGHTS_FILE}  # an archive with neither is not a run


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
    with archive:
        members = _checked_members(archive)
        root = runs_root()
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=root))
        try:
            for info, target in members:
                destination = staging / target
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(destination, "wb") as out:
                    shutil.copyfileobj(source, out)
            _check_run(staging)
            try:
                staging.rename(run_folder(name))
            except OSError:
                raise RunError(f"a run named {name!r} already exists: choose another name") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return run_folder(name)


def _checked_members(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Each file and where it goes inside the run folder: relative, no '..', no links, a
    sane total size; one enclosing folder (a zipped folder rather than its files) is dropped."""
    files = [info for info in archive.infolist() if not info.is_dir()]
    if sum(info.file_size for info in files) > MAX_UNPACKED_BYTES:
        raise RunError(f"the archive unpacks to more than {MAX_UNPACKED_BYTES / 2**30:.0f} GiB; that is not a run of this app")
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
    if not RUN_FILES & {str(p) for p in paths}:
        raise RunError("the archive holds no run: a run has metrics.jsonl and model.safetensors at its top")
    return list(zip(files, paths))


def _check_run(folder: Path) -> None:
    """The checkpoint loads and the records parse, or the import is refused."""
    if (folder / WEIGHTS_FILE).is_file():
        try:
            load_checkpoint(folder, "cpu")
        except CheckpointError as exc:
            raise RunError(f"the run's checkpoint is damaged: {exc}") from None
    for records in (METRICS_FILE, SAMPLES_FILE, STATUS_FILE):
        path = folder / records
        if path.is_file():
            try:
                [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise RunError(f"{records} in the archive is damaged ({exc})") from None
