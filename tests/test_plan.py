"""A run planned once (lm.plan): presets merged in one place, the device resolved once,
everything checked before a process starts; the command line trains what a plan says."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest

import lm.__main__ as cli
import lm.device
from explorer import runs
from lm.data import DataError
from lm.device import resolve_device
from lm.model import ConfigError, GPTConfig
from lm.plan import PRESETS, RunChoice, check_plan, plan_run, preset_options, with_preset
from lm.sizing import parameter_count
from lm.tasks import TASKS, task_tokenizer
from lm.train_config import TrainConfig, padded_vocab_size
from tests.helpers import TINY_RUN

TINY = TINY_RUN


def command_line_config(monkeypatch, *argv: str) -> TrainConfig:
    """The config `python -m lm train ARGV` would train, caught before any training."""
    caught = []
    monkeypatch.setattr(cli, "train_and_report", lambda cfg, resume: caught.append(cfg))
    assert cli.main(["train", *argv]) == 0
    return caught[0]


def test_a_task_plan_is_what_the_command_line_trains(tmp_path, monkeypatch):
    out = str(tmp_path / "copy")
    from_cli = command_line_config(monkeypatch, "--data", "task:copy", "--out", out)
    plan = plan_run(RunChoice({"data": "task:copy", "out": out}))
    assert plan.problem is None and plan.vocab_size == task_tokenizer().vocab_size
    assert plan.config == replace(from_cli, device=resolve_device(from_cli.device))  # the plan resolved "auto"
    assert plan.config.n_layer == TASKS["copy"].preset["n_layer"]


def test_the_command_line_trains_a_planned_config_as_it_is(tmp_path, monkeypatch):
    page = {"data": "task:brackets", "max_steps": 3, "n_embd": 32, "threads": 2, "device": "cpu"}
    plan = plan_run(RunChoice(page, size="medium"))  # a task brings its own sizes: the size preset is not used
    preset = TASKS["brackets"].preset
    assert (plan.config.max_steps, plan.config.n_embd, plan.config.threads) == (3, 32, 2)  # chosen settings win
    assert (plan.config.snapshot_every, plan.config.tokenizer, plan.config.n_layer) == (
        preset["snapshot_every"], "characters", preset["n_layer"],
    )
    config_file = tmp_path / "train_config.json"
    config_file.write_text(json.dumps(asdict(plan.config)))
    assert with_preset(asdict(plan.config)) == asdict(plan.config)  # complete: no preset changes it
    from_cli = command_line_config(monkeypatch, "--config", str(config_file), "--out", plan.config.out)
    assert from_cli == plan.config


def test_presets_start_from_a_task_or_a_size_and_chosen_settings_win():
    assert preset_options("task:sort") == TASKS["sort"].preset
    assert preset_options("task:sort", size="tiny") == TASKS["sort"].preset
    assert preset_options("tinyshakespeare", size="tiny") == PRESETS["tiny"].options
    assert preset_options("tinyshakespeare", size="custom") == {} == preset_options("tinyshakespeare")
    plan = plan_run(RunChoice({**TINY, "n_layer": 3}, vocab_size=320, size="small"))
    assert plan.config.n_layer == 3 and plan.config.max_steps == TINY["max_steps"]
    assert plan.config.lr == PRESETS["small"].options["lr"]  # not chosen: the size's
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        plan_run(RunChoice({"data": "task:nope"}))


def test_impossible_plans_say_why_and_are_not_started(tmp_path, monkeypatch):
    def problem(settings: dict, **choice) -> str | None:
        return plan_run(RunChoice({**TINY, **settings}, **{"vocab_size": 320, **choice})).problem

    assert problem({}) is None
    assert "n_embd (100) must be divisible by n_head (3)" in problem({"n_embd": 100, "n_head": 3})
    assert "38.7 billion parameters" in problem({"n_layer": 48, "n_embd": 8192, "n_head": 64})  # on any machine
    monkeypatch.setattr("lm.plan.physical_memory_bytes", lambda: 2**30)
    assert "GiB to train" in problem({"n_layer": 12, "n_embd": 1024, "n_head": 16})  # 150M parameters, 1 GiB
    assert "not more than the context of 32" in problem({}, tokens=320)
    assert "even counting every byte" in problem({}, tokens=320, tokens_bound=True)
    assert "at least one process" in problem({}, processes=0)
    assert "needs a context of at least 16" in problem({"data": "task:copy", "block_size": 8})
    with pytest.raises(ValueError, match="unknown training options"):
        plan_run(RunChoice({**TINY, "layers": 3}, vocab_size=320))
    with pytest.raises(ValueError, match="vocabulary size"):
        plan_run(RunChoice(TINY))

    monkeypatch.setenv("LM_RUNS_DIR", str(tmp_path / "runs"))
    odd = plan_run(RunChoice({**TINY, "n_embd": 100, "n_head": 3}, vocab_size=320))
    with pytest.raises(runs.RunError, match="divisible by n_head"):
        runs.start_run("odd", odd)
    assert not (tmp_path / "runs" / "odd").exists()


def test_auto_is_resolved_once_and_several_processes_share_cuda(monkeypatch):
    asked = []
    monkeypatch.setattr(lm.device, "default_device", lambda: asked.append(1) or "cpu")
    plan = plan_run(RunChoice({**TINY, "device": "auto"}, vocab_size=320))
    assert plan.config.device == "cpu" and plan.problem is None and len(asked) == 1

    monkeypatch.setattr("lm.plan.device_memory_bytes", lambda device: 80 * 2**30)  # no GPU needed to plan for one
    assert plan_run(RunChoice({**TINY, "device": "cuda:1"}, vocab_size=320, processes=2)).config.device == "cuda"
    assert plan_run(RunChoice({**TINY, "device": "cuda:1"}, vocab_size=320)).config.device == "cuda:1"


def test_check_plan_refuses_what_cannot_train():
    tiny = TrainConfig.from_dict(TINY)
    model = check_plan(tiny, vocab_size=300, tokens=10_000)
    assert model.vocab_size == 320 and parameter_count(model) == parameter_count(GPTConfig(320, 32, 1, 2, 32))
    with pytest.raises(DataError, match="validation part of the text has 32 tokens"):
        check_plan(tiny, vocab_size=320, tokens=320)  # 10% held out: 32 tokens, not more than 32
    with pytest.raises(DataError, match="even counting every byte"):
        check_plan(tiny, vocab_size=320, tokens=320, tokens_bound=True)
    with pytest.raises(ConfigError, match="divisible"):
        check_plan(TrainConfig.from_dict({**TINY, "n_embd": 100, "n_head": 3}), 320, 10_000)
    with pytest.raises(ConfigError, match="at most 2 billion"):
        check_plan(TrainConfig.from_dict({**TINY, "n_layer": 48, "n_embd": 8192, "n_head": 64}), 320, 10_000)
    with pytest.raises(ConfigError, match="at most 128 layers"):
        check_plan(TrainConfig.from_dict({**TINY, "n_layer": 1_000_000, "n_embd": 8, "n_head": 2}), 320, 10_000)
    with pytest.raises(ConfigError, match="with a batch of 200000"):
        check_plan(TrainConfig.from_dict({**TINY, "batch_size": 200_000, "block_size": 1024}), 50_257, 10**7)


def test_padded_vocab_size_matches_the_trainer():
    assert [padded_vocab_size(v) for v in (64, 300, 320, 321, 50_257)] == [64, 320, 320, 384, 50_304]
    assert plan_run(RunChoice(TINY, vocab_size=300)).model.vocab_size == 320
