"""Exporting a run as a zip and importing it back; archives that must be refused."""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import zipfile
from dataclasses import asdict
from pathlib import Path

import psutil
import pytest

from explorer.paths import runs_root
from explorer.run_archive import export_run, import_run
from explorer.runs import RunError, continue_problem, delete_run, list_runs, run_info, stop_run
from explorer.training_view import runs_table
from lm.run_folder import read_metrics
from lm.train_config import TrainConfig
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
    expected = {k: v for k, v in files(original).items() if k not in ("launch.json", "status.json")}
    assert {k: v for k, v in files(imported).items() if k != "status.json"} == expected
    assert {r.name: (r.state, r.step) for r in list_runs()} == {"mine": ("finished", 100), "theirs": ("imported", 100)}
    assert read_metrics(imported) == read_metrics(original)  # its curve can be overlaid


def test_a_zipped_folder_is_accepted_too(runs):
    original = finished_run(runs / "mine")
    entries = {f"mine/{name}": data for name, data in files(original).items()}
    copy = files(import_run(zip_of(entries), "copy"))
    assert copy.keys() == files(original).keys() - {"launch.json"}
    assert all(copy[name] == data for name, data in files(original).items() if name not in ("launch.json", "status.json"))


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


def member(archive: bytes, name: str) -> tuple[int, int]:
    """Where a stored member's data starts in the archive, and where its central-directory entry is."""
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo(name)
    data_start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    entry = archive.find(b"PK\x01\x02")
    while archive[entry + 46 : entry + 46 + len(name)] != name.encode():
        entry = archive.find(b"PK\x01\x02", entry + 4)
    return data_start, entry


def stored_zip(entries: dict[str, bytes]) -> bytearray:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return bytearray(buffer.getvalue())


def test_a_member_that_fails_its_checksum_or_lies_about_its_size_is_refused(runs):
    entries = files(finished_run(runs / "mine"))
    corrupt = stored_zip(entries)
    data_start, _ = member(bytes(corrupt), "metrics.jsonl")
    corrupt[data_start] ^= 1
    lying = stored_zip(entries)
    _, entry = member(bytes(lying), "metrics.jsonl")
    lying[entry + 24 : entry + 28] = struct.pack("<I", 5)  # the listing says 5 bytes; more follow
    for archive in (corrupt, lying):
        with pytest.raises(RunError, match="'metrics.jsonl' in the archive is damaged or lies about its size"):
            import_run(bytes(archive), "incoming")
    assert sorted(os.listdir(runs)) == ["mine"]


@pytest.mark.parametrize(
    "limit, value, entries, message",
    [
        ("MAX_MEMBERS", 3, {f"attention/step_{i:07d}.safetensors": b"x" for i in range(4)}, "holds 5 files; .* at most 3"),
        ("MAX_MEMBER_BYTES", 2**20, {"data.txt": bytes(2**20 + 1)}, "'data.txt' in the archive unpacks to 1.0 MB"),
        ("MAX_UNPACKED_BYTES", 2**20, {"a.txt": bytes(2**19), "b.txt": bytes(2**19 + 1)}, "one import may unpack at most"),
    ],
)
def test_an_archive_beyond_the_limits_is_refused_before_unpacking(runs, monkeypatch, limit, value, entries, message):
    monkeypatch.setattr(f"explorer.run_archive.{limit}", value)
    unpacked = []
    monkeypatch.setattr("explorer.run_archive._unpack", lambda *args: unpacked.append(args))
    with pytest.raises(RunError, match=message):
        import_run(zip_of({"metrics.jsonl": b"", **entries}), "incoming")
    assert unpacked == [] and (not runs.exists() or os.listdir(runs) == [])


@pytest.mark.slow
def test_a_zip_bomb_is_refused_from_its_listing(runs):
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metrics.jsonl", b"")
        for i in range(2):  # 2 x 600 MiB of zeros in about 1.2 MB
            with archive.open(f"data{i}.txt", "w", force_zip64=True) as out:
                for _ in range(600):
                    out.write(bytes(2**20))
    assert len(bomb.getvalue()) < 3 * 2**20
    with pytest.raises(RunError, match=r"unpacks to 1258.3 MB; one import may unpack at most 1073.7 MB"):
        import_run(bomb.getvalue(), "incoming")
    assert not runs.exists() or os.listdir(runs) == []


def test_imports_share_a_quota_and_say_what_is_used(runs, monkeypatch):
    original = finished_run(runs / "mine")
    (original / "data.txt").write_bytes(os.urandom(600_000))  # incompressible: 0.6 MB on disk
    monkeypatch.setenv("LM_IMPORT_QUOTA_MB", "1")
    import_run(export_run(original), "first")
    with pytest.raises(RunError, match=r"unpacks to 0\.\d MB, and your imported runs use 0\.\d MB of the 1\.0 MB"):
        import_run(export_run(original), "second")
    assert sorted(os.listdir(runs)) == ["first", "mine"]


def test_an_imported_run_is_never_running_and_its_pid_is_never_signalled(runs, monkeypatch):
    original = finished_run(runs / "mine")
    me = psutil.Process()
    record = {"state": "running", "step": 100, "pid": me.pid, "started": me.create_time(), "error": "![x](http://example.com/a.png)"}
    entries = {**files(original), "status.json": json.dumps(record).encode(),
               "launch.json": json.dumps({"pid": me.pid, "started": me.create_time(), "command": me.cmdline()}).encode()}
    signals = []
    monkeypatch.setattr("os.killpg", lambda *args: signals.append(args))
    monkeypatch.setattr("psutil.Process.send_signal", lambda *args: signals.append(args))
    folder = import_run(zip_of(entries), "incoming")
    assert not (folder / "launch.json").exists()
    info = run_info(folder)
    assert (info.state, info.active, info.step, info.error) == ("imported", False, 100, None)
    assert stop_run("incoming") is False
    assert "was imported" in continue_problem(info)
    delete_run("incoming")
    assert signals == [] and not folder.exists()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("metrics.jsonl", b'{"step": 1, "train_loss": 5}\n[1, 2]\n', "metrics.jsonl in the archive is not what this app writes \\(line 2\\)"),
        ("metrics.jsonl", b'{"step": "1", "train_loss": 5}\n', "metrics.jsonl .* not what this app writes"),
        ("samples.jsonl", b'{"step": 1, "text": ["a"]}\n', "samples.jsonl .* not what this app writes"),
        ("detectors.jsonl", b'"scores"\n', "detectors.jsonl .* not what this app writes"),
        ("train_config.json", b'["n_layer", 2]', "train_config.json in the archive is not a training config"),
        ("train_config.json", b'{"n_layer": "2"}', "n_layer must be a int"),
    ],
)
def test_records_of_the_wrong_type_are_refused(runs, name, content, message):
    entries = {**files(finished_run(runs / "mine")), name: content}
    with pytest.raises(RunError, match=message):
        import_run(zip_of(entries), "incoming")
    assert sorted(os.listdir(runs)) == ["mine"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["model"].update(n_layer=20_000), "at most 128 layers"),
        (lambda c: c["model"].update(n_layer=1_000_000, n_embd=8, n_head=2), "at most 128 layers"),
        (lambda c: c["model"].pop("n_embd"), "the model config has no n_embd"),
        (lambda c: c.update(training=["a", "list"]), "bad training record"),
        (lambda c: c.update(training="a string"), "bad training record"),
    ],
)
def test_a_checkpoint_config_is_checked_before_any_model_is_built(runs, monkeypatch, change, message):
    entries = files(finished_run(runs / "mine"))
    config = json.loads(entries["config.json"])
    change(config)
    entries["config.json"] = json.dumps(config).encode()
    monkeypatch.setattr("lm.model.GPT.__init__", lambda *args: pytest.fail("a model was built"))
    with pytest.raises(RunError, match=message):
        import_run(zip_of(entries), "incoming")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"data": 5}, "data must be a str, not 5"),
        ({"n_layer": "2"}, "n_layer must be a int"),
        ({"no_such_option": 1}, "unknown training options: no_such_option"),
    ],
)
def test_a_checkpoints_recorded_settings_are_checked_like_a_training_config(runs, settings, message):
    """A command-line run has no train_config.json: the runs table shows its checkpoint's settings
    (explorer.run_recorded), and a 5 for its data failed the whole table."""
    original = finished_run(runs / "mine")
    entries = files(original)
    config = json.loads(entries["config.json"])
    entries["config.json"] = json.dumps({**config, "training": {**config["training"], "config": settings}}).encode()
    with pytest.raises(RunError, match=f"the training record in config.json in the archive is not a training config of this app .*{message}"):
        import_run(zip_of(entries), "incoming")
    assert sorted(os.listdir(runs)) == ["mine"]
    good = asdict(TrainConfig(data="task:copy", tokenizer="characters", out="/elsewhere/cli"))
    entries["config.json"] = json.dumps({**config, "training": {**config["training"], "config": good}}).encode()
    import_run(zip_of(entries), "cli")
    assert run_info(runs / "cli").options == good and "task:copy" in runs_table([run_info(runs / "cli")])[0]["data · tokenizer"]
