"""LoRA: a fresh adapter changes nothing, a merged one changes nothing further, and only the
adapter learns."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from lm.attention import Linear
from lm.finetune.lora import (
    LoRALinear, adapter_state, apply_lora, count_trainable, load_adapter, lora_layers, lora_parameters, merge_lora,
)
from tests.checkpoints import tiny_gpt


@pytest.mark.parametrize("base", [Linear(6, 4), nn.Linear(6, 4)])
def test_lora_with_b_zero_equals_the_base_layer(base):
    torch.manual_seed(0)
    nn.init.normal_(base.weight)
    x = torch.randn(3, 5, 6)
    layer = LoRALinear(base, rank=2, alpha=4)
    assert torch.equal(layer(x), base(x))
    with torch.no_grad():
        layer.lora_B.normal_()
    by_hand = x @ (base.weight.T if isinstance(base, nn.Linear) else base.weight) + base.bias + x @ layer.lora_A @ layer.lora_B * 2
    torch.testing.assert_close(layer(x), by_hand)


def test_merged_weights_give_the_unmerged_logits():
    model = apply_lora(tiny_gpt(64), rank=4, alpha=8)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.normal_(0, 0.1)
    x = torch.randint(0, 64, (2, 12))
    unmerged = model(x).logits
    merged = merge_lora(copy.deepcopy(model))
    assert not lora_layers(merged)
    assert (unmerged - tiny_gpt(64)(x).logits).abs().max() > 1e-3  # the adapter changes the logits
    torch.testing.assert_close(merged(x).logits, unmerged, atol=1e-5, rtol=1e-5)
    assert merged.state_dict().keys() == tiny_gpt(64).state_dict().keys()  # an ordinary model again


def test_only_adapter_parameters_receive_gradients():
    model = apply_lora(tiny_gpt(64), rank=2, alpha=2, targets="attn")
    x = torch.randint(0, 64, (2, 12))
    model(x, x).loss.backward()
    adapters = {id(p) for p in lora_parameters(model)}
    for name, p in model.named_parameters():
        if id(p) in adapters:
            assert p.grad is not None, name
        else:
            assert p.grad is None and not p.requires_grad, name
    assert len(lora_layers(model)) == 4  # c_attn and c_proj of two blocks: not the MLPs
    trainable, total = count_trainable(model)
    assert trainable == sum(p.numel() for p in lora_parameters(model)) == 2 * (2 * (32 + 96) + 2 * (32 + 32))
    assert total == sum(p.numel() for p in tiny_gpt(64).parameters()) + trainable


def test_adapter_round_trip_and_bad_settings():
    model = apply_lora(tiny_gpt(64), rank=2, alpha=2)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.normal_()
    fresh = apply_lora(tiny_gpt(64), rank=2, alpha=2)
    load_adapter(fresh, adapter_state(model))
    x = torch.randint(0, 64, (1, 8))
    torch.testing.assert_close(fresh(x).logits, model(x).logits)
    with pytest.raises(ValueError, match="does not fit"):
        load_adapter(apply_lora(tiny_gpt(64), rank=2, alpha=2, targets="mlp"), adapter_state(model))
    with pytest.raises(ValueError, match="rank"):
        apply_lora(tiny_gpt(64), rank=0, alpha=1)
    with pytest.raises(ValueError, match="no linear layer"):
        apply_lora(tiny_gpt(64), rank=1, alpha=1, targets="wte")
