"""The runs table shows what each run really is, however it was started: a run from the
command line or a fine-tune (no train_config.json) by its checkpoint's model and settings, a
run still training by the best validation loss its metrics hold; and a finished run the app
started costs no more than its small records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import psutil
import pytest

from explorer import live_files, run_recorded, runs
from explorer.training_view import LOSS_FORMAT, runs_table
from lm.checkpoint import save_checkpoint
from lm.run_folder import LAUNCH_FILE, METRICS_FILE, STATUS_FILE, TRAIN_CONFIG_FILE
from lm.train_config import TrainConfig
from tests.checkpoints import shakespeare_bpe, tiny_gpt

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LM_RUNS_DIR", str(tmp_path / "runs"))
    (tmp_path / "runs").mkdir()
    return tmp_path / "runs"


def write(folder: Path, name: str, record: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(record), encoding="utf-8")


def write_metrics(folder: Path, val_losses: list[float | None]) -> None:
    lines = [{"step": 10 * (i + 1), "train_loss": 3.0, **({} if v is None else {"val_loss": v})} for i, v in enumerate(val_losses)]
    (folder / METRICS_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


def checkpoint(folder: Path, training: dict, **shape) -> None:
    """A checkpoint of a model of `shape`, with the training record its trainer writes."""
    bpe = shakespeare_bpe()
    save_checkpoint(folder, tiny_gpt(bpe.vocab_size, **shape), bpe, training)


def status(state: str, **fields) -> dict:
    """status.json as the trainer writes it, by this very process (so a running run counts as running)."""
    return {"state": state, "pid": os.getpid(), "started": psutil.Process().create_time(), **fields}


def row(root: Path, name: str) -> dict:
    return next(r for r in runs_table(runs.list_runs(root)) if r["run"] == name)


def test_a_command_line_run_shows_the_model_context_and_settings_its_checkpoint_records(root):
    folder = root / "cli"
    cfg = TrainConfig(out=str(folder), data="task:sort", tokenizer="characters", n_layer=3, n_head=2, n_embd=48,
                      block_size=24)
    checkpoint(folder, {"config": asdict(cfg), "step": 40, "best_val_loss": 1.5}, n_layer=3, n_head=2, n_embd=48, block_size=24)
    write(folder, STATUS_FILE, status("finished", step=40, max_steps=40, best_val_loss=1.4321))
    shown = row(root, "cli")
    assert (shown["model"], shown["context"], shown["best val loss"]) == ("3 layers × 48 wide, 2 heads", 24, 1.432)
    assert shown["data · tokenizer"] == "task:sort · characters"
    assert runs.run_info(folder).options["n_embd"] == 48  # the watch view's diagnosis reads them too


def test_a_run_still_training_shows_the_best_validation_loss_it_measured(root, monkeypatch):
    folder = root / "training"
    write(folder, STATUS_FILE, status("running", step=30, max_steps=100))  # no best loss until it ends
    write_metrics(folder, [None, 2.5, None, 2.25, float("nan"), 2.75])  # evaluated, its checkpoint not saved yet
    assert runs.run_info(folder).state == "running"
    assert row(root, "training")["best val loss"] == 2.25
    with open(folder / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": 70, "train_loss": 2.0, "val_loss": 2.125}) + "\n")
    live_files.recent_metrics.clear()  # the next refresh comes seconds later, past the look the views share
    assert row(root, "training")["best val loss"] == 2.125  # the next refresh sees the new evaluation

    checkpoint(folder, {"config": {}, "step": 70, "best_val_loss": 2.125})  # saved at the evaluation, as the trainer does
    monkeypatch.setattr(run_recorded, "run_metrics", forbidden)  # the growing file is not reread on every refresh
    assert row(root, "training")["best val loss"] == 2.125
    checkpoint(folder, {"config": {}, "step": 80, "best_val_loss": 2.0})
    assert row(root, "training")["best val loss"] == 2.0  # a new checkpoint is read again


def forbidden(*args):
    raise AssertionError("read on every refresh although a small record has the figure")


def test_a_finetune_shows_its_models_shape_and_no_settings_of_a_pretraining(root):
    folder = root / "tuned"
    checkpoint(folder, {"finetune": {"method": "sft", "from": "models/demo"}, "step": 20, "best_val_loss": 0.875},
               n_layer=1, n_head=4, n_embd=32, block_size=40)
    write(folder, STATUS_FILE, status("failed", step=20, max_steps=50, error="boom"))
    write_metrics(folder, [1.25, 0.875])
    info = runs.run_info(folder)
    assert info.options == {} and info.model == {"n_layer": 1, "n_head": 4, "n_embd": 32, "block_size": 40}
    shown = row(root, "tuned")
    assert (shown["model"], shown["context"], shown["best val loss"]) == ("1 layer × 32 wide, 4 heads", 40, 0.875)


def test_a_run_before_its_first_checkpoint_shows_what_is_known(root):
    write(root / "app", TRAIN_CONFIG_FILE, {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64})
    write(root / "app", LAUNCH_FILE, {"pid": 1, "started": 1.0})
    write(root / "cli", STATUS_FILE, status("running", step=0, max_steps=100))
    app, cli = row(root, "app"), row(root, "cli")
    assert (app["model"], app["context"], app["best val loss"]) == ("2 layers × 64 wide, 2 heads", 64, None)
    assert (cli["model"], cli["context"], cli["best val loss"]) == ("", None, None)


def test_a_finished_run_the_app_started_reads_neither_its_checkpoint_nor_its_metrics(root, monkeypatch):
    folder = root / "app"
    write(folder, TRAIN_CONFIG_FILE, {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64, "data": "tinyshakespeare"})
    write(folder, STATUS_FILE, status("finished", step=40, max_steps=40, best_val_loss=1.75))
    write_metrics(folder, [1.75])  # what it holds is the same as the status; reading it would be wasted
    monkeypatch.setattr(run_recorded, "run_metrics", forbidden)
    monkeypatch.setattr(run_recorded, "read_config", forbidden)
    shown = row(root, "app")
    assert (shown["model"], shown["context"], shown["best val loss"]) == ("2 layers × 64 wide, 2 heads", 64, 1.75)


def test_the_best_validation_loss_of_metrics_skips_steps_without_one_and_non_numbers():
    records = [{"step": 1}, {"step": 2, "val_loss": float("inf")}, {"step": 3, "val_loss": True}, {"step": 4, "val_loss": 3.5},
               {"step": 5, "val_loss": "1.0"}, {"step": 6, "val_loss": 4}]
    assert run_recorded.best_val_loss(records) == 3.5
    assert run_recorded.best_val_loss(records[:3]) is None


@pytest.mark.slow
def test_a_real_command_line_run_with_the_task_defaults_shows_what_it_trained(root):
    """`python -m lm train --data task:copy`: the copy task's preset (2 layers × 64 wide, 1 head,
    context 16), not TrainConfig's defaults (4 × 128, 4 heads, 128), and the loss it measured."""
    folder = root / "copy"
    done = subprocess.run([sys.executable, "-m", "lm", "train", "--data", "task:copy", "--max-steps", "20", "--out", str(folder),
                           "--device", "cpu"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (folder / TRAIN_CONFIG_FILE).exists()
    metrics = [json.loads(line) for line in (folder / METRICS_FILE).read_text().splitlines()]
    shown = row(root, "copy")
    assert (shown["model"], shown["context"], shown["status"]) == ("2 layers × 64 wide, 1 head", 16, "✅ finished")
    assert shown["best val loss"] == float(LOSS_FORMAT % min(m["val_loss"] for m in metrics if "val_loss" in m))
    assert shown["data · tokenizer"] == "task:copy · characters"
