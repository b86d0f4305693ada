"""Outside autograd a pass's rotary angles and causal mask are made once and kept for every
layer (lm.rope.rotation_at, lm.attention.hidden_as_minus_inf). Kept ones must be the same
numbers, and nothing kept may reach a training step's backward pass."""

from __future__ import annotations

import torch

from lm.attention import causal_mask, hidden_as_minus_inf
from lm.inspect import attention_pass
from lm.rope import rotation, rotation_at
from tests.checkpoints import tiny_gpt

LLAMA_STYLE = dict(position="rope", norm="rmsnorm", mlp="swiglu", n_head=4, n_kv_head=2, n_embd=48, bias=False)


def test_kept_angles_and_mask_are_the_fresh_ones():
    with torch.inference_mode():
        cos, sin = rotation_at(3, 5, 8, 10000.0, torch.device("cpu"))
        assert rotation_at(3, 5, 8, 10000.0, torch.device("cpu"))[0] is cos  # made once
        mask = hidden_as_minus_inf(4, 6, torch.float32, torch.device("cpu"), 3)
        assert hidden_as_minus_inf(4, 6, torch.float32, torch.device("cpu"), 3) is mask
    fresh_cos, fresh_sin = rotation(torch.arange(3, 8), 8, 10000.0)
    assert torch.equal(cos, fresh_cos) and torch.equal(sin, fresh_sin)
    visible = causal_mask(4, 6, window=3)
    assert torch.equal(mask == 0, visible) and bool((mask[~visible] == float("-inf")).all())
    assert rotation_at(3, 5, 8, 10000.0, torch.device("cpu"))[0] is not cos  # under autograd: made afresh


def test_a_training_step_after_the_pages_pass_keeps_nothing_from_it():
    model = tiny_gpt(97, seed=2, **LLAMA_STYLE).train()
    ids = list(range(12))
    attention_pass(model, ids)  # inference mode: fills the kept angles and mask
    idx = torch.tensor([ids])
    out = model(idx, targets=idx)
    out.loss.backward()  # an inference-mode tensor saved for backward would raise here
    assert model.transformer.h[0].attn.c_attn.weight.grad is not None
