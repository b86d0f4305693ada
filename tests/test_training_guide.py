"""The training guide: each flag fires on a synthetic metric stream that shows its
problem and stays quiet on a healthy run."""

from __future__ import annotations

import math

import pytest

from explorer.training_guide import diagnose, repetition_share
from lm.tasks import TASKS

OPTIONS = dict(lr=1e-3, warmup_steps=20, max_steps=1000, dropout=0.0)
HEALTHY_SAMPLE = ("ROMEO: What say you, my lord? I will not stay to hear thee speak of love and "
                  "war, for the night is young and the king is gone to bed.")


def stream(train, val=None, every=10, eval_every=50, seconds_per_step=0.01):
    """metrics.jsonl records: train losses logged every `every` steps, val losses at evals."""
    val = iter(val or [])
    records = []
    for i, loss in enumerate(train, start=1):
        step = i * every
        record = {"step": step, "train_loss": loss, "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 1e4,
                  "elapsed": step * seconds_per_step}
        if step % eval_every == 0:
            record["val_loss"] = next(val, None)
        records.append({k: v for k, v in record.items() if v is not None})
    return records


def healthy(n=40):
    return [4.5 * math.exp(-i / 15) + 1.5 for i in range(n)]


def keys(flags):
    return [f.key for f in flags]


def test_a_healthy_run_raises_no_flag():
    train = healthy()
    metrics = stream(train, val=[t + 0.05 for t in train[4::5]])
    samples = [{"step": 400, "text": HEALTHY_SAMPLE}]
    assert diagnose(metrics, samples, OPTIONS) == []
    assert diagnose(metrics, samples, OPTIONS, state="finished") == []


def test_nan_loss_from_the_trainer_error():
    error = "the loss became nan at step 57: training diverged. Try a lower learning rate (now 0.01; try 0.003)"
    flags = diagnose(stream(healthy(5)), [], {**OPTIONS, "lr": 0.01}, state="failed", error=error)
    assert keys(flags) == ["diverged"]
    assert "step 57" in flags[0].evidence and "0.003" in flags[0].advice


def test_exploding_loss():
    train = healthy(20) + [3.0, 6.0, 9.0, 12.0]
    flags = diagnose(stream(train), [], OPTIONS)
    assert keys(flags) == ["diverged"]
    assert "exploding" in flags[0].title


def test_a_loss_that_rises_within_the_warmup_is_not_flagged():
    train = [4.0, 7.0, 9.0]  # steps 10..30, warmup 1000
    assert diagnose(stream(train), [], {**OPTIONS, "warmup_steps": 1000}) == []


def test_flat_loss():
    train = [4.17 + 0.02 * math.sin(i) for i in range(20)]
    flags = diagnose(stream(train), [], OPTIONS)
    assert keys(flags) == ["flat"]
    assert "3e-4" in flags[0].advice


def test_a_plateau_after_learning_is_not_flat():
    train = healthy(10) + [healthy(10)[-1]] * 30
    assert "flat" not in keys(diagnose(stream(train), [], OPTIONS))


def test_overfitting():
    train = healthy(40)  # keeps falling
    val = [3.5, 2.9, 2.7, 2.8, 2.95, 3.1, 3.3, 3.4]  # best at the third eval, then rising
    flags = diagnose(stream(train, val=val), [], OPTIONS)
    assert keys(flags) == ["overfitting"]
    assert "2.70" in flags[0].evidence and "dropout" in flags[0].advice


def test_validation_noise_is_not_overfitting():
    train = healthy(40)
    val = [3.5, 2.9, 2.7, 2.705, 2.71, 2.70, 2.702, 2.709]  # within 2% of the best
    assert diagnose(stream(train, val=val), [], OPTIONS) == []


def test_a_solved_task_is_not_overfitting():
    """A loss near 0 wobbles by more than 2% of itself: 0.0090 -> 0.0093 is no trend."""
    train = [0.5 / (i + 1) for i in range(40)]
    val = [0.05, 0.02, 0.0090, 0.0091, 0.0093, 0.0092, 0.0093, 0.0093]
    assert diagnose(stream(train, val=val), [], OPTIONS) == []


def test_repeating_samples():
    loop = "the king the king the king " * 6
    flags = diagnose(stream(healthy()), [{"step": 500, "text": loop}], OPTIONS)
    assert keys(flags) == ["repeating"]
    early = [{"step": 100, "text": loop}]  # early samples loop in every run: not flagged
    assert diagnose(stream(healthy()), early, OPTIONS) == []


@pytest.mark.parametrize("text, share", [("a b c a b c", 1 / 4), ("one two three four", 0.0), ("", 0.0)])
def test_repetition_share(text, share):
    assert repetition_share(text) == pytest.approx(share)


def test_slow_on_cpu_and_on_one_gpu():
    metrics = stream(healthy(10), seconds_per_step=2.0)  # 2 s a step, 900 steps left: 30 minutes
    options = {**OPTIONS, "max_steps": 1000}
    cpu = diagnose(metrics, [], options, device="cpu")
    assert keys(cpu) == ["slow"] and "GPU" in cpu[0].advice and "30 min" in cpu[0].evidence
    gpu = diagnose(metrics, [], options, device="cuda")
    assert "torchrun" in gpu[0].advice
    assert diagnose(metrics, [], options, state="finished") == []  # done: no longer slow
    assert diagnose(stream(healthy(10), seconds_per_step=0.5), [], options) == []  # 7.5 minutes left


def lr_half_run():
    """The run at learning rate 0.5 the guide missed: the loss spiked to 22, then sat at 5.4
    beside the blind-guess line of a 512-token vocabulary (6.24)."""
    return [6.3, 6.0, 5.6, 22.0, 14.0, 8.0] + [5.4 + 0.05 * math.sin(i) for i in range(30)]


def test_a_spike_then_a_plateau_near_a_blind_guess_is_flagged():
    flags = diagnose(stream(lr_half_run()), [], {**OPTIONS, "lr": 0.5}, vocab_size=512)
    assert keys(flags) == ["wrecked"]  # not also "flat" or "exploding"
    assert "22.0" in flags[0].evidence and "6.24" in flags[0].evidence and "0.5" in flags[0].advice


def test_no_wrecked_flag_without_a_spike_after_recovery_or_without_the_vocabulary():
    assert "wrecked" not in keys(diagnose(stream(healthy()), [], OPTIONS, vocab_size=512))
    recovered = [6.3, 22.0, 9.0] + [6.0 - 0.12 * i for i in range(30)]  # it falls back below the line and on
    assert "wrecked" not in keys(diagnose(stream(recovered), [], OPTIONS, vocab_size=512))
    assert "wrecked" not in keys(diagnose(stream(lr_half_run()), [], OPTIONS))  # no line to compare with


@pytest.mark.slow
@pytest.mark.parametrize("data", ["text", "task:copy", "task:sort"])
def test_the_guide_raises_no_false_alarm_on_the_runs_the_tests_train(tmp_path, shakespeare_path, data):
    """Real runs as the suite trains them (tests.helpers.TINY_RUN, and short task runs): each
    flag the guide raises on them would be a false alarm, while running or finished."""
    from lm.run_folder import read_metrics, read_samples, tokenizer_vocab_size
    from lm.train_config import TrainConfig
    from lm.trainer import Trainer
    from tests.helpers import TINY_RUN

    if data == "text":
        options = {**TINY_RUN, "data": str(shakespeare_path), "max_steps": 60}
    else:
        options = {**TASKS[data.removeprefix("task:")].preset, "data": data, "max_steps": 100, "eval_every": 20,
                   "sample_every": 20, "snapshot_every": 0}
    cfg = TrainConfig.from_dict({**options, "out": str(tmp_path / "run")})
    Trainer(cfg).train()
    metrics, samples = read_metrics(tmp_path / "run"), read_samples(tmp_path / "run")
    vocab = tokenizer_vocab_size(tmp_path / "run")
    for state, upto in (("running", len(metrics) // 2), ("running", len(metrics)), ("finished", len(metrics))):
        assert diagnose(metrics[:upto], samples, vars(cfg), state, device="cpu", vocab_size=vocab) == []


def test_a_task_loss_wobbling_near_zero_is_not_an_explosion():
    """A copy-task run at 99% accuracy: its loss went from 0.11 to 0.18 and back (this fired before)."""
    train = [3.2, 3.0, 2.9, 2.5, 1.2, 0.4, 0.2, 0.11, 0.15, 0.18, 0.17, 0.18, 0.12, 0.10]
    assert diagnose(stream(train), [], OPTIONS, vocab_size=257) == []
