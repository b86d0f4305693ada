"""LoRA targets by name: one expert's layer (what a student watching one expert specialize
names), one block's, and a name that matches no layer refused with the names there are."""

from __future__ import annotations

import pytest
import torch

from lm.attention import Linear
from lm.finetune.lora import apply_lora, count_trainable, lora_layers, lora_parameters
from tests.checkpoints import tiny_gpt

MOE = dict(n_experts=4, experts_top_k=2)


def adapted(targets: str, **config) -> torch.nn.Module:
    return apply_lora(tiny_gpt(64, **config), rank=2, alpha=4.0, targets=targets)


@pytest.mark.parametrize("targets, chosen", [
    ("mlp.experts.0.c_fc", {f"transformer.h.{b}.mlp.experts.0.c_fc" for b in range(2)}),
    ("experts.3", {f"transformer.h.{b}.mlp.experts.3.{m}" for b in range(2) for m in ("c_fc", "c_proj")}),
    ("h.1.mlp.experts.2.c_proj", {"transformer.h.1.mlp.experts.2.c_proj"}),
    ("h.0.attn", {"transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj"}),
    ("attn.c_proj,mlp.experts.1.c_fc,h.1.mlp.router",
     {f"transformer.h.{b}.{m}" for b in range(2) for m in ("attn.c_proj", "mlp.experts.1.c_fc")}
     | {"transformer.h.1.mlp.router"}),
])
def test_one_experts_layers_and_one_blocks(targets, chosen):
    assert set(lora_layers(adapted(targets, **MOE))) == chosen


def test_one_experts_layer_trains_alone():
    model = adapted("mlp.experts.0.c_fc", **MOE).train()
    assert count_trainable(model)[0] == 2 * 2 * (32 + 128)  # rank 2 x (32 in + 128 out), in each of 2 blocks
    assert type(model.transformer.h[0].mlp.experts[1].c_fc) is Linear  # the other experts' layers stay plain
    x = torch.randint(0, 64, (4, 16))
    output = model(x, x)
    (output.loss + output.aux_loss).backward()
    graded = {name for name, p in model.named_parameters() if p.grad is not None}
    assert graded == {f"transformer.h.{b}.mlp.experts.0.c_fc.lora_{m}" for b in range(2) for m in "AB"}
    for b in range(2):  # expert 0 got tokens in both blocks (B moves first: A's gradient is 0 while B is)
        assert model.transformer.h[b].mlp.experts[0].c_fc.lora_B.grad.abs().sum() > 0
    assert sum(p.numel() for p in lora_parameters(model)) == count_trainable(model)[0]


def test_a_target_that_names_no_layer_is_refused_with_the_names_there_are():
    with pytest.raises(ValueError) as moe:
        adapted("attn,mlp.experts.4.c_fc", **MOE)  # experts 0 to 3: the attention part alone must not train quietly
    assert "'mlp.experts.4.c_fc'" in str(moe.value)
    assert "mlp.c_fc, mlp.c_proj, mlp.router; or one expert's: mlp.experts.N.c_fc, mlp.experts.N.c_proj " \
           "(N from 0 to 3)" in str(moe.value)
    for target in ("mlp.experts.0.c_fc", "mlp.router", "fc"):  # a dense model has no experts or router; parts are whole
        with pytest.raises(ValueError) as dense:
            adapted(target)
        assert str(dense.value).endswith("name attn, mlp, or a layer: attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj")
