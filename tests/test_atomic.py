"""lm.atomic: a file is replaced whole or not at all, by any number of writers at once,
and nothing of the writing is left behind."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from lm.atomic import atomic_path, exclusive, is_temporary, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "config.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_writers_of_one_file_at_once_each_use_their_own_temporary(tmp_path):
    target, errors = tmp_path / "status.json", []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        try:
            for _ in range(50):
                write_text(target, str(n) * 10_000)
        except Exception as exc:  # a shared temporary name: one writer renames it from under another
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_text() in {str(n) * 10_000 for n in range(8)}  # one writer's whole file
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_temporary_and_lock_files_are_not_data(tmp_path):
    with atomic_path(tmp_path / "model.safetensors") as tmp:
        assert is_temporary(tmp) and tmp.name.startswith(".model.safetensors.")
        tmp.write_bytes(b"")
    assert not is_temporary(tmp_path / "model.safetensors") and is_temporary(tmp_path / "x.npy.lock")


def test_exclusive_lets_one_holder_in_at_a_time_and_leaves_no_lock_file(tmp_path):
    target, inside, overlaps = tmp_path / "entry.npy", [], []

    def holder() -> None:
        for _ in range(20):
            with exclusive(target):
                inside.append(1)
                overlaps.append(len(inside))
                time.sleep(0.001)
                inside.pop()

    threads = [threading.Thread(target=holder) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(overlaps) == 80 and max(overlaps) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("durable", [False, True])
def test_a_durable_write_syncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch, durable):
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")).name))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_text(tmp_path / "manifest.json", "{}", durable=durable)
    assert (tmp_path / "manifest.json").read_text() == "{}"
    rename = ("rename", "manifest.json")
    if durable:
        assert events[0][0] == "fsync" and events[0][1].startswith(".manifest.json.")  # the data, under its temporary name
        assert events[1:] == [rename, ("fsync", tmp_path.name)]  # then the folder's entry for the new name
    else:
        assert events == [rename]
