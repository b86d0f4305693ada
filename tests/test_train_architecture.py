"""Training with the architecture dial: TrainConfig's switches (one flag each) reach the
model, are kept in config.json, and a resumed run keeps them; the presets build valid models."""

from __future__ import annotations

import json

import pytest

import lm.__main__ as cli
from lm.architectures import ARCHITECTURES, GPT2_OPTIONS, matching_architecture, model_switches, swiglu_width
from lm.checkpoint import load_checkpoint, read_config
from lm.config import GPTConfig
from lm.sizing import kv_cache_bytes, parameter_breakdown
from lm.train_config import TrainConfig
from tests.helpers import TINY_RUN

FLAGS = ["--position", "rope", "--rope-base", "500", "--norm", "rmsnorm", "--qk-norm", "--mlp", "swiglu",
         "--n-kv-head", "1", "--window", "8", "--window-layers", "0", "--no-tied-head", "--no-bias"]


def tiny_flags(out, steps: int) -> list[str]:
    settings = TINY_RUN | {"n_layer": 2, "max_steps": steps, "sample_every": 0}
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
    return ["train", "--data", "task:copy", *flags, "--snapshot-every", "0", "--out", str(out)]


def test_default_options_build_gpt2_exactly():
    assert TrainConfig().model_config(64) == GPTConfig(vocab_size=64, block_size=128, n_layer=4, n_head=4, n_embd=128)
    assert {name: getattr(TrainConfig(), name) for name in GPT2_OPTIONS} == GPT2_OPTIONS


def test_flags_train_the_switches_and_resume_keeps_them(tmp_path):
    out = tmp_path / "run"
    assert cli.main([*tiny_flags(out, 4), *FLAGS]) == 0
    model, training = read_config(out)
    expected = dict(position="rope", rope_base=500.0, norm="rmsnorm", qk_norm=True, mlp="swiglu", n_kv_head=1,
                    window=8, window_layers=[0], tied_head=False, bias=False, mlp_hidden=swiglu_width(32))
    assert {name: getattr(model, name) for name in expected} == expected
    assert training["config"]["window_layers"] == "0" and training["config"]["n_kv_head"] == 1
    assert "lm_head.weight" in load_checkpoint(out).model.state_dict()  # untied: a head of its own
    assert cli.main(["train", "--resume", "--out", str(out), "--max-steps", "6"]) == 0
    resumed, training = read_config(out)
    assert resumed == model and training["step"] == 6 and training["config"]["qk_norm"] is True


def test_a_config_file_sets_the_switches(tmp_path, monkeypatch):
    caught = []
    monkeypatch.setattr(cli, "train_and_report", lambda cfg, resume: caught.append(cfg))
    options = tmp_path / "options.json"
    options.write_text(json.dumps({"data": "task:copy", "mlp": "relu2", "parallel_residual": True}))
    assert cli.main(["train", "--config", str(options), "--out", str(tmp_path / "run")]) == 0
    model = caught[0].model_config(64)
    assert (model.mlp, model.parallel_residual, model.position) == ("relu2", True, "learned")


@pytest.mark.parametrize("options, message", [
    (dict(position="alibi"), "position must be one of learned, rope"),
    (dict(n_kv_head=3), "n_kv_head (3) must divide n_head (4)"),
    (dict(n_kv_head=-1), "n_kv_head must be at least 0"),
    (dict(window=4, window_layers="0,x"), "window_layers must list layer numbers"),
    (dict(window=4, window_layers="7"), "window_layers must name layers from 0 to 3"),
    (dict(window_layers="1"), "window_layers needs a window"),
    (dict(position="rope", rotary_fraction=0.01), "rotary turns pairs of dimensions"),
    (dict(qk_norm="yes"), "qk_norm must be a bool"),
])
def test_bad_switches_are_refused_naming_the_field(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**options).check()


def test_swiglu_keeps_the_mlp_near_gpt2s_parameter_count():
    for n_embd in (32, 96, 128, 384):
        width = swiglu_width(n_embd)
        assert width % 8 == 0 and 8 * n_embd / 3 <= width < 8 * n_embd / 3 + 8
    gelu = parameter_breakdown(TrainConfig(bias=False).model_config(64))["MLP"]
    swiglu = parameter_breakdown(TrainConfig(bias=False, mlp="swiglu").model_config(64))["MLP"]
    assert 1 <= swiglu / gelu < 1.02
    assert TrainConfig(mlp="swiglu", mlp_hidden=100).model_config(64).mlp_hidden == 100  # an explicit width wins


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("n_head", [1, 2, 3, 4])
def test_every_preset_builds_a_valid_model_and_is_recognised(name, n_head):
    settings = ARCHITECTURES[name].settings(n_head)
    config = TrainConfig(n_head=n_head, n_embd=32 * n_head, **settings).check()
    assert matching_architecture(settings, n_head) == name
    model = config.model_config(64)
    if ARCHITECTURES[name].grouped and n_head % 2 == 0:  # grouped: half the KV cache of the same sizes
        plain = TrainConfig(n_head=n_head, n_embd=32 * n_head).model_config(64)
        assert 2 * kv_cache_bytes(model) == kv_cache_bytes(plain)
    else:
        assert model.kv_heads == n_head


def test_a_mix_of_switches_is_no_preset():
    assert matching_architecture(GPT2_OPTIONS | {"mlp": "swiglu"}, 4) is None
    assert model_switches(GPT2_OPTIONS, 128, 4) == {**GPT2_OPTIONS, "n_kv_head": None, "window": None,
                                                   "mlp_hidden": None, "window_layers": None, "rope_local_base": None}
