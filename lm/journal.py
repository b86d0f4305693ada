"""A set of files (a checkpoint) replaced as one unit, through a write-ahead journal.

Why a journal, not a new step folder behind a pointer: every reader (DESIGN.md) opens
config.json, tokenizer.json and model.safetensors at the top of the folder; a journal
keeps them there, so no reader changes. The commit, by the folder's one writer:

  1. each new file is written whole beside the old one, as .NAME.staged.tmp, and fsync'd;
  2. manifest.json {"step", "state": "pending", "files": {NAME: {"size", "sha256"}}} is
     written atomically and durably: the commit point;
  3. each staged file is renamed over its NAME, in the order given (config.json last),
     and the folder fsync'd;
  4. manifest.json is rewritten with "state": "complete" (not synced: should a power cut
     undo it, the manifest is pending again and `recover` finds every file in place).

A kill before 2 leaves the old set whole (its manifest still complete) and some staged
files, which the next commit removes. A kill after 2 leaves a pending manifest whose every
file is complete, either staged or in place, so `recover` can always finish the switch
(roll forward): each file's size and hash tell which of the two it is. `verify` checks
the files in place against the manifest's sizes and hashes.

Only the writer recovers (a reader renaming files under a live writer could switch in
a half-written staged file of the next commit): the trainer before each commit and at
resume. A reader that opens the folder during the switch (milliseconds), or after a kill
before a resume, may get files of two neighbouring steps: for a training run they differ
in numbers only. Resuming, where that would change the curve, verifies first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

from lm.atomic import TMP_SUFFIX, fsync_dir, fsync_file, write_json

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "llm-explorer/manifest"
PENDING, COMPLETE = "pending", "complete"

log = logging.getLogger(__name__)  # a roll-forward is reported here: on stderr, so in the run's train.log

Writer = Callable[[Path], None]  # writes one file of the set at the path it is given


class InconsistentSet(ValueError):
    """Files that do not form the set their manifest names; the message says which and why."""


def staged_path(folder: Path, name: str) -> Path:
    return folder / f".{name}.staged{TMP_SUFFIX}"


def file_entry(path: Path) -> dict:
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"size": path.stat().st_size, "sha256": digest}


def commit(folder: str | os.PathLike, writers: dict[str, Writer], step: int | None = None) -> None:
    """Replace the files named in `writers` as one unit, switched in in their order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    recover(folder)  # an earlier commit cut short is finished first, so its staged files are free
    entries = {}
    try:
        for name, write in writers.items():
            path = staged_path(folder, name)
            write(path)
            fsync_file(path)
            entries[name] = file_entry(path)
    except BaseException:
        for name in writers:
            staged_path(folder, name).unlink(missing_ok=True)
        raise
    fsync_dir(folder)  # the staged files exist on disk before the manifest names them
    manifest = {"format": MANIFEST_FORMAT, "step": step, "state": PENDING, "files": entries}
    write_json(folder / MANIFEST_FILE, manifest, durable=True, indent=2)
    _switch(folder, manifest, list(entries))


def _switch(folder: Path, manifest: dict, names: list[str]) -> None:
    """Steps 3 and 4: the staged files of `names` renamed into place, then the manifest complete."""
    for name in names:
        os.replace(staged_path(folder, name), folder / name)
    fsync_dir(folder)  # the renames are on disk before anything else changes
    write_json(folder / MANIFEST_FILE, {**manifest, "state": COMPLETE}, indent=2)


def read_manifest(folder: Path) -> dict | None:
    """The manifest, checked by type; None for a folder written before manifests (or by hand)."""
    path = folder / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InconsistentSet(f"{MANIFEST_FILE} in {folder} cannot be read ({exc}); it cannot vouch for the checkpoint") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    well_formed = (
        isinstance(files, dict) and manifest.get("format") == MANIFEST_FORMAT
        and manifest.get("state") in (PENDING, COMPLETE)
        and (manifest.get("step") is None or type(manifest["step"]) is int)
        and all(isinstance(e, dict) and type(e.get("size")) is int and isinstance(e.get("sha256"), str)
                and isinstance(n, str) and n == Path(n).name and not n.startswith(".") for n, e in files.items())
    )
    if not well_formed:
        raise InconsistentSet(f"{MANIFEST_FILE} in {folder} is not a checkpoint manifest this program wrote")
    return manifest


def recover(folder: str | os.PathLike) -> None:
    """Finish a commit cut short after its commit point (roll forward), saying so; remove the
    staged files of one cut short before it."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is not None and manifest["state"] == PENDING:
        to_move = []
        for name, entry in manifest["files"].items():
            staged, final = staged_path(folder, name), folder / name
            if staged.is_file() and file_entry(staged) == entry:
                to_move.append(name)
            elif not (final.is_file() and file_entry(final) == entry):
                raise InconsistentSet(
                    f"neither {name} in {folder} nor its staged copy {staged.name} is the file {MANIFEST_FILE} "
                    f"names for the checkpoint of step {manifest['step']}: the interrupted checkpoint cannot be finished"
                )
        _switch(folder, manifest, to_move)
        log.warning("%s: finished the checkpoint of step %s that was interrupted while being switched in "
                    "(moved %s into place)", folder, manifest["step"], ", ".join(to_move) or "nothing: all were")
    for staged in folder.glob(f".*.staged{TMP_SUFFIX}"):
        staged.unlink()  # written before a commit point that never came


def verify(folder: str | os.PathLike) -> int | None:
    """Check every file the (complete) manifest names against its size and sha256; returns the
    manifest's step, or None for a folder without a manifest (nothing to check against)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    if manifest["state"] != COMPLETE:
        raise InconsistentSet(f"the checkpoint in {folder} is half switched in: recover it first")
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise InconsistentSet(f"{name} is missing from {folder}, though {MANIFEST_FILE} names it")
        if file_entry(path) != entry:
            raise InconsistentSet(
                f"{name} in {folder} is not the file {MANIFEST_FILE} names for the checkpoint of step "
                f"{manifest['step']} (another step's, or changed since): the checkpoint is mixed"
            )
    return manifest["step"]
