"""A training run's metrics are read once a look for every rerun in between, and a run that
has ended is read as it is now."""

from __future__ import annotations

import json

from explorer.live_files import has_metrics, recent_metrics, run_metrics
from lm.run_folder import METRICS_FILE


def log(folder, *steps: int) -> None:
    with open(folder / METRICS_FILE, "a", encoding="utf-8") as f:
        f.writelines(json.dumps({"step": step, "train_loss": 5.0 - step / 100}) + "\n" for step in steps)


def test_a_training_runs_reruns_share_one_look_and_an_ended_run_is_read_now(tmp_path):
    recent_metrics.clear()
    log(tmp_path, 10, 20)
    stamp, metrics = run_metrics(tmp_path, active=True)
    assert [r["step"] for r in metrics] == [10, 20]
    log(tmp_path, 30)  # the trainer writes on between two reruns
    assert run_metrics(tmp_path, active=True) == (stamp, metrics)  # the same look, so the same figures
    ended_stamp, ended = run_metrics(tmp_path, active=False)
    assert [r["step"] for r in ended] == [10, 20, 30] and ended_stamp != stamp
    recent_metrics.clear()  # what the next look (a second later) does
    assert [r["step"] for r in run_metrics(tmp_path, active=True)[1]] == [10, 20, 30]


def test_a_run_has_metrics_once_it_has_logged_a_line(tmp_path):
    assert not has_metrics(tmp_path)
    (tmp_path / METRICS_FILE).write_text("", encoding="utf-8")
    assert not has_metrics(tmp_path)
    log(tmp_path, 10)
    assert has_metrics(tmp_path)
    assert run_metrics(tmp_path / "gone", active=False) == (None, [])
