"""The run manager with real child processes: tiny models trained by `python -m lm train`
in a temporary runs root, started, listed, stopped, killed and deleted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from explorer import runs
from lm import run_folder
from lm.checkpoint import load_checkpoint, read_config
from lm.plan import RunChoice, RunPlan, plan_run
from lm.train_config import padded_vocab_size
from tests.helpers import TINY_RUN, wait_for

TINY = TINY_RUN


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LM_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture(scope="module")
def text(shakespeare_text) -> str:
    return shakespeare_text[:60_000]


def plan(options: dict, text: str | None = None) -> RunPlan:
    """A run planned as the Train page plans it (TINY's BPE has 320 tokens)."""
    return plan_run(RunChoice(options, vocab_size=320, text=text))


def state_of(name: str) -> runs.RunInfo:
    return runs.run_info(runs.run_folder(name))


def launched(name: str) -> dict:
    return json.loads((runs.run_folder(name) / run_folder.LAUNCH_FILE).read_text())


def training(name: str, min_step: int = 1) -> runs.RunInfo | None:
    info = state_of(name)
    assert info.state in ("starting", "running"), (info.state, info.error)
    return info if info.state == "running" and info.step >= min_step else None


@pytest.mark.slow
def test_a_run_starts_trains_and_finishes_with_a_true_status(root, text):
    info = runs.start_run("tiny", plan({**TINY, "tokenizer": "bpe:300"}, text=text))
    assert info.state == "starting"  # the child is still importing torch
    assert (root / "tiny" / run_folder.DATA_FILE).read_text(encoding="utf-8") == text
    config = json.loads((root / "tiny" / run_folder.TRAIN_CONFIG_FILE).read_text())
    assert config["data"] == str((root / "tiny" / run_folder.DATA_FILE).resolve()) and config["n_embd"] == 32

    seen = ["starting"]  # every state observed, in order; a fast run may finish between two looks

    def finished():
        info = state_of("tiny")
        if info.state != seen[-1]:
            seen.append(info.state)
        return info if info.state == "finished" else None

    done = wait_for(finished)
    assert seen in (["starting", "running", "finished"], ["starting", "finished"])
    assert [r.name for r in runs.list_runs()] == ["tiny"]
    assert done.step == done.max_steps == 40 and done.error is None and done.best_val_loss < 6
    wait_for(lambda: runs._process(launched("tiny")) is None, timeout=30)  # exits, and is reaped
    assert launched("tiny")["pid"] not in runs._children

    metrics = run_folder.read_metrics(done.folder)
    assert [m["step"] for m in metrics] == list(range(2, 41, 2))
    assert [m["step"] for m in metrics if "val_loss" in m] == [10, 20, 30, 40]
    assert min(m["val_loss"] for m in metrics if "val_loss" in m) == pytest.approx(done.best_val_loss)
    assert [s["step"] for s in run_folder.read_samples(done.folder)] == [10, 20, 30, 40]
    config = load_checkpoint(done.folder).model.config
    assert config.n_embd == 32
    assert config.vocab_size == padded_vocab_size(300) == 320  # as the trainer pads it
    assert run_folder.tokenizer_vocab_size(done.folder) == 300
    assert "finished at step 40" in (done.folder / run_folder.LOG_FILE).read_text()


@pytest.mark.slow
def test_stop_saves_a_loadable_checkpoint_and_ends_stopped(root, text):
    runs.start_run("long", plan({**TINY, "max_steps": 100_000, "eval_every": 1_000}, text=text))
    wait_for(lambda: training("long", min_step=4))
    assert runs.stop_run("long")
    assert state_of("long").stop_requested
    stopped = wait_for(lambda: (i := state_of("long")).state == "stopped" and i)
    assert 4 <= stopped.step < 100_000
    assert load_checkpoint(stopped.folder).model.config.n_layer == 1
    assert read_config(stopped.folder)[1]["step"] == stopped.step  # the checkpoint is from the last step
    assert not runs.stop_run("long")  # nothing left to stop


@pytest.mark.slow
def test_a_run_stopped_while_starting_ends_stopped(root, text):
    runs.start_run("early", plan(TINY, text=text))
    assert runs.stop_run("early")
    assert wait_for(lambda: state_of("early").state == "stopped")


@pytest.mark.slow
def test_a_killed_process_is_reported_as_died(root, text):
    runs.start_run("victim", plan({**TINY, "max_steps": 100_000}, text=text))
    wait_for(lambda: training("victim"))
    os.killpg(launched("victim")["pid"], signal.SIGKILL)  # no chance to write its status
    died = wait_for(lambda: (i := state_of("victim")).state == "died" and i)
    assert "gone" in died.error
    assert json.loads((died.folder / run_folder.STATUS_FILE).read_text())["state"] == "running"  # what it last said


def write_status(folder: Path, **status) -> None:
    folder.mkdir(parents=True)
    (folder / run_folder.STATUS_FILE).write_text(json.dumps({"step": 7, "max_steps": 50, **status}))


def test_a_status_of_the_wrong_types_reads_as_a_failed_run_not_an_error(root):
    from explorer.training_view import runs_table

    folder = root / "odd"
    write_status(folder, state=["running"], step="12", max_steps=True, error=7, best_val_loss="low", position={})
    info = runs.run_info(folder)
    assert (info.state, info.step, info.max_steps, info.error, info.best_val_loss) == ("failed", 0, None, None, None)
    assert runs_table([info])[0]["step"] == "0"
    (folder / run_folder.STATUS_FILE).write_text(json.dumps({"state": "finished", "step": 40, "best_val_loss": 2}))
    assert (runs.run_info(folder).state, runs.run_info(folder).best_val_loss) == ("finished", 2.0)


def test_a_status_that_says_running_is_checked_against_the_process(root):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    here = psutil.Process().create_time()
    write_status(root / "gone", state="running", pid=int(ended.stdout), started=here)
    write_status(root / "reused", state="running", pid=os.getpid(), started=here - 60)  # pytest has the run's old pid
    write_status(root / "unproven", state="running", pid=os.getpid())  # no start time: never taken for the run
    write_status(root / "alive", state="running", pid=os.getpid(), started=here)  # as a run in this very process
    write_status(root / "done", state="finished", pid=int(ended.stdout), best_val_loss=1.5)
    write_status(root / "broke", state="failed", pid=int(ended.stdout), error="the loss became nan at step 3")
    states = {info.name: (info.state, info.error) for info in runs.list_runs()}
    assert states["gone"][0] == states["reused"][0] == states["unproven"][0] == "died"
    assert states["alive"] == ("running", None)
    assert states["done"] == ("finished", None)
    assert states["broke"] == ("failed", "the loss became nan at step 3")


def test_a_process_that_took_a_dead_runs_pid_is_neither_stopped_nor_killed(root):
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)  # leads its group, as a run's process would
    try:
        folder = root / "old"
        write_status(folder, state="running", pid=bystander.pid)
        launch = {"pid": bystander.pid, "started": psutil.Process(bystander.pid).create_time() - 3600}
        (folder / run_folder.LAUNCH_FILE).write_text(json.dumps(launch))
        assert state_of("old").state == "died"
        assert not runs.stop_run("old")
        runs.delete_run("old")
        assert not folder.exists() and bystander.poll() is None  # still running, never signalled
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.slow
def test_a_failure_before_training_shows_the_trainers_message(root):
    info = runs.start_run("short", plan(TINY, text="To be, or not to be. " * 20))  # far fewer tokens than it needs
    failed = wait_for(lambda: (i := state_of("short")).state == "failed" and i)
    assert "not more than the context of 32" in failed.error  # from status.json, or the log when it has none
    assert failed.folder == info.folder


@pytest.mark.slow
def test_several_runs_train_at_once(root, text, shakespeare_path):
    runs.start_run("one", plan(TINY, text=text))
    runs.start_run("two", plan({**TINY, "data": str(shakespeare_path), "max_steps": 20}))
    finished = wait_for(lambda: all(i.state == "finished" for i in runs.list_runs()) and runs.list_runs())
    assert sorted((i.name, i.step) for i in finished) == [("one", 40), ("two", 20)]
    assert json.loads((root / "two" / run_folder.TRAIN_CONFIG_FILE).read_text())["data"] == str(shakespeare_path)


@pytest.mark.slow
def test_delete_stops_the_run_and_removes_only_runs_inside_the_root(root, text, tmp_path):
    runs.start_run("doomed", plan({**TINY, "max_steps": 100_000}, text=text))
    wait_for(lambda: training("doomed"))
    launch = launched("doomed")
    runs.delete_run("doomed")
    assert not (root / "doomed").exists()
    assert runs._process(launch) is None

    outside = tmp_path / "precious"
    write_status(outside, state="finished", pid=1)
    (root / "link").symlink_to(outside)
    for name in ("../precious", "link", "missing", "/etc"):
        with pytest.raises(runs.RunError):
            runs.delete_run(name)
    assert (outside / run_folder.STATUS_FILE).is_file()
    imported = root / "gpt2"  # a model folder, not a training run
    imported.mkdir()
    (imported / "config.json").write_text("{}")
    with pytest.raises(runs.RunError, match="not a training run"):
        runs.delete_run("gpt2")
    assert imported.is_dir()


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "x" * 65, "a..b"])
def test_bad_run_names_are_refused_before_anything_is_written(root, name):
    with pytest.raises(runs.RunError, match="not a usable run name"):
        runs.start_run(name, plan(TINY))
    assert not root.exists() or not any(root.iterdir())


def test_an_existing_name_or_an_impossible_config_is_refused(root, text):
    (root / "taken").mkdir(parents=True)
    (root / "tiny-pasted-1").mkdir()
    assert runs.name_problem("taken") == "a run named 'taken' already exists: choose another name"
    assert runs.name_problem("fresh") is None and "not a usable run name" in runs.name_problem("a/b")
    assert runs.free_name("tiny-pasted") == "tiny-pasted-2"
    with pytest.raises(runs.RunError, match="already exists"):
        runs.start_run("taken", plan(TINY, text=text))
    with pytest.raises(runs.RunError, match="divisible by n_head"):
        runs.start_run("odd", plan({**TINY, "n_embd": 100, "n_head": 3}, text=text))
    with pytest.raises(ValueError, match="unknown training options"):
        runs.start_run("typo", plan({**TINY, "layers": 3}, text=text))
    assert sorted(p.name for p in root.iterdir()) == ["taken", "tiny-pasted-1"]


def test_metrics_reader_skips_a_line_being_written(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "train_loss": 5.0}\n{"step": 2, "train_loss": 4.5}\n{"step": 3, "trai')
    assert [r["step"] for r in run_folder.read_jsonl(path)] == [1, 2]
    with open(path, "a") as f:
        f.write('n_loss": 4.1}\nnot json\n{"step": 4, "train_loss": 4.0}\n')
    assert [r["step"] for r in run_folder.read_jsonl(path)] == [1, 2, 3, 4]  # the finished line, and past garbage
    assert run_folder.read_jsonl(tmp_path / "missing.jsonl") == []


def test_a_process_that_ended_before_training_is_failed_with_its_last_words_or_stopped(root):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for name, extra, log in (
        ("crashed", {}, "  0%|          | 0/40\r  5%|▌  | 2/40\nTraceback (most recent call last):\n  ...\nRuntimeError: boom\n"),
        ("refused", {}, "error: no such file: /tmp/missing.txt\n"),
        ("silent", {}, ""),
        ("halted", {"stop_requested": time.time()}, ""),
    ):
        folder = root / name
        folder.mkdir(parents=True)
        (folder / run_folder.LAUNCH_FILE).write_text(json.dumps({"pid": int(gone.stdout), "started": time.time(), **extra}))
        (folder / run_folder.LOG_FILE).write_text(log)
    states = {info.name: (info.state, info.error) for info in runs.list_runs()}
    assert states["crashed"] == ("failed", "RuntimeError: boom")
    assert states["refused"] == ("failed", "no such file: /tmp/missing.txt")
    assert states["silent"][0] == "failed" and "without a message" in states["silent"][1]
    assert states["halted"] == ("stopped", None)
