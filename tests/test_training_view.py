"""The Train page's chart builders and texts: the figures hold exactly the metrics given."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from explorer.runs import RunInfo
from explorer.training_view import (
    downsample_indices, format_bytes, format_duration, grad_norm_figure, loss_figure, lr_figure, overlay_figure,
    progress_text, runs_table, series,
)


def fake_metrics(steps: int, log_every: int = 10, eval_every: int = 50, seconds_per_step: float = 0.5) -> list[dict]:
    rng = random.Random(0)
    records = []
    for step in range(log_every, steps + 1, log_every):
        record = {
            "step": step, "train_loss": 6 * math.exp(-step / 300) + 1.5 + rng.random() * 0.2, "lr": 1e-3 * min(1, step / 100),
            "grad_norm": 0.5 + rng.random(), "tokens_per_s": 4000 + step, "elapsed": step * seconds_per_step,
        }
        if step % eval_every == 0:
            record["val_loss"] = record["train_loss"] + 0.1
        records.append(record)
    return records


def trace(fig, name_part: str):
    return next(t for t in fig.data if name_part in t.name)


def test_loss_figure_holds_train_and_val_losses_at_their_steps():
    metrics = fake_metrics(300)
    fig = loss_figure(metrics, uniform_loss=math.log(512))
    train, val = trace(fig, "training"), trace(fig, "validation")
    assert list(train.x) == [m["step"] for m in metrics]
    assert list(train.y) == [m["train_loss"] for m in metrics]
    assert list(val.x) == [50, 100, 150, 200, 250, 300]
    assert list(val.y) == [m["val_loss"] for m in metrics if "val_loss" in m]
    assert fig.layout.shapes[0].y0 == pytest.approx(math.log(512))  # the blind-guess line
    assert fig.layout.xaxis.title.text == "training step" and fig.layout.font.size >= 16


def test_loss_figure_of_a_run_without_records_yet_is_empty_not_an_error():
    fig = loss_figure([])
    assert [list(t.x) for t in fig.data] == [[], []]


def test_lr_and_grad_norm_figures_hold_their_series():
    metrics = fake_metrics(200)
    assert list(lr_figure(metrics).data[0].y) == [m["lr"] for m in metrics]
    assert list(grad_norm_figure(metrics).data[0].y) == [m["grad_norm"] for m in metrics]
    assert list(grad_norm_figure(metrics).data[0].x) == [m["step"] for m in metrics]


def test_series_skips_missing_and_non_finite_values():
    metrics = [{"step": 1, "train_loss": 3.0}, {"step": 2, "train_loss": float("nan")}, {"step": 3}, {"step": 4, "train_loss": 2}]
    assert series(metrics, "train_loss") == ([1, 4], [3.0, 2.0])


def test_overlay_draws_each_run_in_one_colour():
    curves = {"tiny-1": fake_metrics(200), "small-1": fake_metrics(400, log_every=20, eval_every=100)}
    fig = overlay_figure(curves)
    assert len(fig.data) == 4
    for name, metrics in curves.items():
        train, val = trace(fig, f"{name} · training"), trace(fig, f"{name} · validation")
        assert list(train.y) == [m["train_loss"] for m in metrics]
        assert list(val.x) == [m["step"] for m in metrics if "val_loss" in m]
        assert train.line.color == val.line.color and val.line.dash == "dash"
    assert trace(fig, "tiny-1 · training").line.color != trace(fig, "small-1 · training").line.color


def test_long_curves_are_downsampled_keeping_first_last_minimum_and_spikes():
    metrics = fake_metrics(200_000, log_every=10)  # 20,000 records
    metrics[12_345] = {**metrics[12_345], "train_loss": 50.0}  # a spike
    fig = loss_figure(metrics, max_points=500)
    train = trace(fig, "training")
    losses = [m["train_loss"] for m in metrics]
    assert len(train.x) <= 500
    assert train.x[0] == 10 and train.x[-1] == 200_000
    assert min(train.y) == min(losses) and max(train.y) == 50.0
    assert list(train.x) == sorted(train.x)
    assert all(metrics[s // 10 - 1]["train_loss"] == y for s, y in zip(train.x, train.y))  # real points, not averages


@given(st.lists(st.floats(-1e6, 1e6), max_size=3_000), st.integers(4, 400))
def test_downsample_indices_properties(values, max_points):
    keep = downsample_indices(values, max_points)
    assert keep == sorted(set(keep)) and all(0 <= i < len(values) for i in keep)
    assert len(keep) <= max_points
    if values:
        assert keep[0] == 0 and keep[-1] == len(values) - 1
        assert min(values[i] for i in keep) == min(values) and max(values[i] for i in keep) == max(values)
    if len(values) <= max_points:
        assert keep == list(range(len(values)))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.085, "85 ms"), (4.24, "4.2 s"), (42, "42 s"), (200, "3 min 20 s"), (7_500, "2 h 05 min"), (3 * 86_400, "3.0 days")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_format_bytes():
    assert [format_bytes(n) for n in (512, 16 * 2**20, 1.5 * 2**30, 600 * 2**30)] == ["512 bytes", "16 MiB", "1.5 GiB", "600 GiB"]


def test_progress_text():
    metrics = fake_metrics(500, seconds_per_step=0.5)
    assert progress_text(500, 1_000, metrics, active=True) == "Step 500 of 1,000 · 4,480 tokens/s · about 4 min 10 s left"
    assert progress_text(500, 1_000, metrics, active=False) == "Step 500 of 1,000 · 4,480 tokens/s"
    assert progress_text(0, 1_000, [], active=True) == "Step 0 of 1,000"


def test_runs_table_rows():
    """The model and context columns show the model the run resolved (RunInfo.model), not the options it was given
    (the command line's defaults name none; explorer.run_recorded fills both: tests/test_runs_recorded.py)."""
    options = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128, "data": "/runs/a/data.txt", "tokenizer": "bpe:512"}
    model = {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64}
    infos = [
        RunInfo("a", Path("/runs/a"), "finished", step=600, max_steps=600, best_val_loss=1.23456, started=1.7e9, options=options,
                model=model),
        RunInfo("b", Path("/runs/b"), "died", step=30, max_steps=None, options={"data": "tinyshakespeare"}),
        RunInfo("c", Path("/runs/c"), "stopped", model={"n_layer": 1, "n_head": 1, "n_embd": 32}),
    ]
    a, b, c = runs_table(infos)
    assert a["run"] == "a" and a["status"] == "✅ finished" and a["step"] == "600 / 600" and a["best val loss"] == 1.235
    assert a["model"] == "2 layers × 64 wide, 2 heads" and a["context"] == 64
    assert a["data · tokenizer"] == "data.txt · bpe:512"
    assert b["status"] == "💀 died" and b["step"] == "30" and b["best val loss"] is None and b["data · tokenizer"] == "tinyshakespeare"
    assert b["model"] == "" and b["context"] is None  # died before its first checkpoint: nothing says which model
    assert c["model"] == "1 layer × 32 wide, 1 head" and c["step"] == "0" and c["context"] is None


def test_runs_table_keeps_four_significant_digits_of_a_tiny_loss():
    """A task learned to a loss of 2.3e-05 is not shown as 0 (rounding to 3 decimals did that)."""
    infos = [RunInfo(name, Path(f"/runs/{name}"), "finished", best_val_loss=loss) for name, loss in (("t", 2.34567e-05), ("h", 12.3456))]
    assert [row["best val loss"] for row in runs_table(infos)] == [2.346e-05, 12.35]
