"""Time estimates: the schedule's arithmetic, real pieces timed on a tiny model, and an ETA
that stays steady through validation passes and noise but follows a lasting change of speed."""

from __future__ import annotations

import random
import threading

import pytest
import torch

import lm.estimate
from lm.estimate import StepCosts, estimate, eta_seconds, measure_costs, seconds_per_step
from lm.train_config import TrainConfig

COSTS = StepCosts(train_step=0.1, evaluation=2.0, sample=0.5, snapshot=0.3, checkpoint=0.2, log=0.01, timed_batch=16)


def test_estimate_counts_what_the_schedule_does():
    cfg = TrainConfig(max_steps=1000, eval_every=250, sample_every=200, snapshot_every=100, log_every=1000)
    timed = estimate(cfg, COSTS, startup=4.0)
    assert timed.training == pytest.approx(100.0 + 0.01)  # a line logged at step 1000
    assert timed.evaluation == pytest.approx(4 * (2.0 + 0.2))  # steps 250, 500, 750, 1000, each with a checkpoint
    assert timed.extras == pytest.approx(5 * 0.5 + 11 * 0.3)  # 5 samples; snapshots at 0, 100, …, 1000
    assert timed.run_seconds == pytest.approx(4.0 + 100.01 + 8.8 + 5.8)


def test_a_last_partial_interval_still_evaluates_and_snapshots():
    cfg = TrainConfig(max_steps=130, eval_every=50, sample_every=0, snapshot_every=50)
    timed = estimate(cfg, COSTS, startup=0.0)
    assert timed.evaluation == pytest.approx(3 * 2.2)  # 50, 100, and the end at 130
    assert timed.extras == pytest.approx(4 * 0.3)  # 0, 50, 100, 130


@pytest.mark.parametrize("data", ["task:copy", "tinyshakespeare"])
def test_measured_costs_are_positive_and_scale_down_when_over_budget(data):
    cfg = TrainConfig(data=data, n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=8, eval_batches=2,
                      sample_tokens=5, device="cpu", threads=1)
    model = cfg.model_config(320)
    full = measure_costs(cfg, model)
    assert full.timed_batch == 8
    assert 0 < full.train_step < 5 and full.evaluation > 0 and full.sample > 0 and full.snapshot > 0 and full.log > 0
    scaled = measure_costs(cfg, model, budget=1e-9)  # "too big to time": one sequence, scaled by the batch
    assert scaled.timed_batch == 1 and 0 < scaled.train_step < 5


def stream(steps: int, seconds_per_step, log_every: int = 10, eval_every: int = 100, eval_seconds: float = 3.0,
           start: int = 0):
    """metrics.jsonl records; every eval_every steps the record's interval includes a validation pass, as the trainer's."""
    records, elapsed = [], 0.0
    for step in range(start + log_every, start + steps + 1, log_every):
        elapsed += log_every * seconds_per_step(step) + (eval_seconds if step % eval_every == 0 else 0.0)
        records.append({"step": step, "elapsed": elapsed, "train_loss": 2.0} | ({"val_loss": 2.1} if step % eval_every == 0 else {}))
    return records


def test_eta_is_steady_through_evaluations_and_noise():
    rng = random.Random(0)
    metrics = stream(2000, lambda step: 0.05 * rng.uniform(0.5, 1.5))
    etas = [metrics[n - 1]["elapsed"] + eta_seconds(metrics[:n], 2000) for n in range(40, len(metrics))]  # predicted end
    true_end = 2000 * 0.05 + 20 * 3.0
    assert all(abs(end - true_end) < 0.2 * true_end for end in etas)
    changes = [abs(b - a) / a for a, b in zip(etas, etas[1:])]
    assert max(changes) < 0.05  # a plain window of 20 records jumped by half and back


def test_eta_follows_a_lasting_change_of_speed():
    metrics = stream(3000, lambda step: 0.05 if step <= 1000 else 0.2, eval_seconds=0.0)
    assert seconds_per_step(metrics[:100]) == pytest.approx(0.05)
    assert seconds_per_step(metrics) == pytest.approx(0.2, rel=0.1)


def test_a_resumed_run_counts_from_its_restart():
    before = stream(500, lambda step: 0.5, eval_seconds=0.0)
    after = stream(200, lambda step: 2.0, eval_seconds=0.0, start=500)
    assert seconds_per_step(before + after) == pytest.approx(2.0)
    assert seconds_per_step([{"step": 10, "elapsed": 5.0}]) == pytest.approx(0.5)
    assert eta_seconds([], 100) is None


def test_an_estimate_is_shown_as_precise_as_it_is():
    from explorer.training_view import rough_duration

    assert [rough_duration(s) for s in (42, 365, 3725, 9000)] == ["42 s", "6 min", "1 h 02 min", "2 h 30 min"]


def test_timing_leaves_the_servers_threads_alone():
    import torch

    threads = torch.get_num_threads()
    cfg = TrainConfig(data="task:copy", n_layer=1, n_head=1, n_embd=16, block_size=16, batch_size=2, threads=1, device="cpu")
    measure_costs(cfg, cfg.model_config(257))
    assert torch.get_num_threads() == threads


def test_the_tokenizer_a_run_trains_first_is_timed(shakespeare_path):
    from lm.estimate import tokenizer_seconds

    assert tokenizer_seconds(TrainConfig(data=str(shakespeare_path), tokenizer="bpe:300")) > 0
    assert tokenizer_seconds(TrainConfig(data="task:copy", tokenizer="bpe:300")) == 0  # a task has its own
    assert tokenizer_seconds(TrainConfig(data="x.txt", tokenizer="r50k_base")) == 0  # ready made
    assert tokenizer_seconds(TrainConfig(data="no-such-file.txt", tokenizer="bpe:300")) == 0  # nothing on disk to time


def test_timings_from_two_sessions_at_once_take_turns_and_leave_the_servers_threads(monkeypatch):
    """The thread count is the process's: interleaved, the second timing would restore the first's count."""
    inside, release, seen = threading.Event(), threading.Event(), []

    class Timing:
        def __init__(self, cfg, model_config):
            self.threads = cfg.threads

        def costs(self, budget):
            seen.append((self.threads, torch.get_num_threads()))
            inside.set()
            release.wait(timeout=10)
            return None

    monkeypatch.setattr(lm.estimate, "_Timing", Timing)
    server = torch.get_num_threads()
    first = threading.Thread(target=lm.estimate.measure_costs, args=(TrainConfig(threads=3), None))
    second = threading.Thread(target=lm.estimate.measure_costs, args=(TrainConfig(threads=2), None))
    first.start()
    assert inside.wait(timeout=10)
    second.start()
    second.join(timeout=0.5)
    assert seen == [(3, 3)] and second.is_alive()  # the second waits its turn
    release.set()
    first.join(timeout=10)
    second.join(timeout=10)
    assert seen == [(3, 3), (2, 2)] and torch.get_num_threads() == server
