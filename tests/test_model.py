"""Tests for lm.model: sizes counted from the config against the real module, the
loss, learning, the context limit and the checks on a config."""

from __future__ import annotations

import math

import pytest
import torch

from lm.attention import KVCache, Probe
from lm.model import GPT, ConfigError, GPTConfig
from lm.sizing import flops_per_token, parameter_breakdown, parameter_count

GPT2_SMALL = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
GPT2_SMALL_PARAMETERS = 124_439_808  # the published figure for GPT-2 small (tied head, with wpe)


def tiny(**config) -> GPTConfig:
    return GPTConfig(**(dict(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32) | config))


def module_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # parameters() yields a tied tensor once


def test_gpt2_small_parameter_count(monkeypatch):
    assert parameter_count(GPT2_SMALL) == GPT2_SMALL_PARAMETERS
    monkeypatch.setattr("lm.sizing.physical_memory_bytes", lambda: None)  # GPT() checks training memory
    with torch.device("meta"):  # the real module, without allocating or initialising 500 MB
        model = GPT(GPT2_SMALL)
    assert module_parameters(model) == GPT2_SMALL_PARAMETERS


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(
    "config", [dict(), dict(n_layer=3, n_head=3, n_embd=24, vocab_size=101, block_size=7)], ids=["2x32", "3x24"]
)
def test_parameter_breakdown_matches_the_module(config, bias):
    model = GPT(tiny(bias=bias, **config))
    blocks = model.transformer.h
    parts = parameter_breakdown(model.config)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert parts == {
        "token embedding (shared with the head)": module_parameters(model.transformer.wte),
        "position embedding": module_parameters(model.transformer.wpe),
        "attention": sum(module_parameters(b.attn) for b in blocks),
        "MLP": sum(module_parameters(b.mlp) for b in blocks),
        "layer norms": sum(module_parameters(n) for n in norms),
    }
    assert sum(parts.values()) == parameter_count(model.config) == module_parameters(model)


def test_output_head_is_tied_to_the_token_embedding():
    model = GPT(tiny())
    assert model.lm_head.weight is model.transformer.wte.weight
    with torch.no_grad():  # writing one writes the other
        model.transformer.wte.weight[3].fill_(0.5)
    assert torch.all(model.lm_head.weight[3] == 0.5)


def test_loss_at_initialisation_is_about_log_vocab_size():
    torch.manual_seed(0)
    model = GPT(tiny(vocab_size=320, n_embd=64, block_size=32))
    idx = torch.randint(320, (8, 32))
    targets = torch.randint(320, (8, 32))
    assert model(idx, targets).loss.item() == pytest.approx(math.log(320), abs=0.05)


@pytest.mark.parametrize("ignored", [0, 5], ids=["all-targets", "some-ignored"])
def test_loss_is_the_mean_cross_entropy(ignored):
    torch.manual_seed(1)
    model = GPT(tiny())
    idx = torch.randint(64, (3, 10))
    targets = torch.randint(64, (3, 10))
    targets.view(-1)[:ignored] = -1  # -1 marks a position without a target
    out = model(idx, targets)
    log_probs = out.logits - out.logits.exp().sum(-1, keepdim=True).log()
    keep = targets != -1
    expected = -log_probs[keep].gather(-1, targets[keep].unsqueeze(-1)).mean()
    torch.testing.assert_close(out.loss, expected, atol=1e-5, rtol=1e-5)
    assert model(idx).loss is None


def test_a_tiny_model_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = GPT(tiny())
    idx, targets = torch.randint(64, (4, 16)), torch.randint(64, (4, 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        loss = model(idx, targets).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 3.5
    assert losses[-1] < 0.1


def test_context_longer_than_block_size_is_refused():
    model = GPT(tiny(block_size=8)).eval()
    assert model(torch.zeros(1, 8, dtype=torch.long)).logits.shape == (1, 8, 64)
    with pytest.raises(ValueError, match="9 positions exceed the context length of 8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    cache = KVCache(model.config.n_layer, model.config.block_size)
    model(torch.zeros(1, 6, dtype=torch.long), probe=Probe(cache=cache))
    with pytest.raises(ValueError, match="context length of 8"):
        model(torch.zeros(1, 3, dtype=torch.long), probe=Probe(cache=cache))


def test_validate_refuses_n_embd_not_divisible_by_n_head():
    with pytest.raises(ConfigError, match=r"n_embd \(30\).*n_head \(4\)"):
        tiny(n_embd=30, n_head=4).validate()
    with pytest.raises(ConfigError):
        GPT(tiny(n_embd=30, n_head=4))


@pytest.mark.parametrize("field", ["vocab_size", "block_size", "n_layer", "n_head", "n_embd"])
@pytest.mark.parametrize("value", [0, -3, 2.0, "8", None, True])
def test_validate_refuses_sizes_that_are_not_positive_whole_numbers(field, value):
    with pytest.raises(ConfigError, match=field):
        tiny(**{field: value}).validate()


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5, float("nan"), "0.1", None])
def test_validate_refuses_dropout_out_of_range(dropout):
    with pytest.raises(ConfigError, match="dropout"):
        tiny(dropout=dropout).validate()


def test_validate_refuses_a_model_too_big_for_the_memory():
    with pytest.raises(ConfigError, match="GiB"):
        GPT2_SMALL.validate(memory_bytes=2**30)
    config = tiny(dropout=0.5)
    assert config.validate(memory_bytes=2**30) is config


def test_from_dict_round_trips_and_refuses_unknown_fields():
    config = tiny(dropout=0.1, bias=False)
    assert GPTConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="model_type"):
        GPTConfig.from_dict(config.to_dict() | {"model_type": "gpt2"})


def test_flops_per_token():
    L, T, C = 12, 1024, 768
    non_embedding = GPT2_SMALL_PARAMETERS - T * C  # the position embedding does no matmul
    assert flops_per_token(GPT2_SMALL, training=True) == 6 * non_embedding + 12 * L * T * C
    for config in (GPT2_SMALL, tiny(), tiny(bias=False, n_layer=5)):
        assert flops_per_token(config, training=True) == 3 * flops_per_token(config, training=False)
