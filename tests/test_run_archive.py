"""Exporting a run as a zip and importing it back; archives that must be refused."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from pathlib import Path

import pytest

from explorer.paths import runs_root
from explorer.run_archive import export_run, import_run
from explorer.runs import RunError, list_runs
from lm.run_folder import read_metrics
from tests.checkpoints import make_checkpoint


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LM_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


def finished_run(folder: Path) -> Path:
    make_checkpoint(folder)
    records = [{"step": s, "train_loss": 5.0 - s / 100, "elapsed": s / 10} for s in range(10, 110, 10)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "samples.jsonl").write_text(json.dumps({"step": 100, "text": "To be, or not"}) + "\n")
    (folder / "status.json").write_text(json.dumps({"state": "finished", "step": 100, "max_steps": 100, "pid": 1}))
    (folder / "launch.json").write_text(json.dumps({"pid": 4242, "started": 1.0}))
    (folder / "attention").mkdir()
    (folder / "attention" / "step_0000000.safetensors").write_bytes(b"snapshot bytes")
    return folder


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def zip_of(entries: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def test_an_imported_run_equals_the_exported_one(runs):
    original = finished_run(runs / "mine")
    imported = import_run(export_run(original), "theirs")
    assert imported == runs_root() / "theirs"
    expected = {k: v for k, v in files(original).items() if k != "launch.json"}  # this machine's pid: left out
    assert files(imported) == expected
    assert {r.name: r.state for r in list_runs()} == {"mine": "finished", "theirs": "finished"}
    assert read_metrics(imported) == read_metrics(original)  # its curve can be overlaid


def test_a_zipped_folder_is_accepted_too(runs):
    original = finished_run(runs / "mine")
    entries = {f"mine/{name}": data for name, data in files(original).items()}
    assert files(import_run(zip_of(entries), "copy")) == files(original)


@pytest.mark.parametrize(
    "entries, links, message",
    [
        ({"../evil.txt": b"x", "metrics.jsonl": b""}, (), "outside its folder"),
        ({"/etc/evil": b"x", "metrics.jsonl": b""}, (), "outside its folder"),
        ({"metrics.jsonl": b""}, ("model.safetensors",), "link"),
        ({"notes.txt": b"hello"}, (), "holds no run"),
        ({"metrics.jsonl": b"{not json\n"}, (), "metrics.jsonl in the archive is damaged"),
    ],
)
def test_bad_archives_are_refused_and_leave_nothing(runs, entries, links, message):
    with pytest.raises(RunError, match=message):
        import_run(zip_of(entries, links), "incoming")
    assert not runs.exists() or os.listdir(runs) == []


def test_a_damaged_checkpoint_is_refused(runs):
    original = finished_run(runs / "mine")
    entries = files(original)
    entries["model.safetensors"] = entries["model.safetensors"][:100]
    with pytest.raises(RunError, match="checkpoint is damaged"):
        import_run(zip_of(entries), "incoming")
    assert sorted(os.listdir(runs)) == ["mine"]


def test_not_a_zip_and_a_taken_name(runs):
    with pytest.raises(RunError, match="not a zip"):
        import_run(b"PK but not really", "incoming")
    original = finished_run(runs / "mine")
    with pytest.raises(RunError, match="already exists"):
        import_run(export_run(original), "mine")
    with pytest.raises(RunError, match="not a usable run name"):
        import_run(export_run(original), "../escape")
