"""The Attention page's pass (lm.inspect.attention_pass) leaves out the logits, residuals and
masked scores, and must keep exactly the numbers of the whole forward pass, for GPT-2's
block and for a Llama-style one (rotary positions, grouped key/value heads, a window); the
attention weights the detectors and snapshots read must be those numbers too."""

from __future__ import annotations

import pytest
import torch

from lm.inspect import PAGE_PARTS, attention_pass, attention_weights, forward_pass
from tests.checkpoints import tiny_gpt

ARCHITECTURES = {
    "gpt-2": {},
    "llama-style": dict(position="rope", norm="rmsnorm", mlp="swiglu", n_head=4, n_kv_head=2, n_embd=48, bias=False,
                        window=5, window_layers=[1]),
}


@pytest.mark.parametrize("settings", ARCHITECTURES.values(), ids=ARCHITECTURES.keys())
def test_the_pages_pass_keeps_the_forward_passs_numbers(settings):
    model = tiny_gpt(97, seed=4, **settings)
    ids = torch.randint(97, (20,), generator=torch.Generator().manual_seed(1)).tolist()
    whole, page = forward_pass(model, ids).attention, attention_pass(model, ids)
    assert list(page) == list(PAGE_PARTS)
    for part, tensor in page.items():
        assert torch.equal(tensor, getattr(whole, part)), part
    assert torch.equal(attention_weights(model, ids), whole.weights)
    with pytest.raises(ValueError, match="need 1 to 32 tokens"):
        attention_pass(model, ids * 2)


@pytest.mark.parametrize("settings", ARCHITECTURES.values(), ids=ARCHITECTURES.keys())
def test_one_layers_pass_keeps_that_layers_numbers_of_the_whole_pass(settings):
    """The step-through's pass (one layer) and the page's (every layer) are the same numbers."""
    model = tiny_gpt(97, seed=4, **settings)
    ids = torch.randint(97, (20,), generator=torch.Generator().manual_seed(1)).tolist()
    whole = attention_pass(model, ids)
    for layer in range(model.config.n_layer):
        one = attention_pass(model, ids, layer=layer)
        assert list(one) == list(PAGE_PARTS)
        for part, tensor in one.items():
            assert torch.equal(tensor, whole[part][layer]), (layer, part)
    with pytest.raises(ValueError, match="not -1"):
        attention_pass(model, ids, layer=-1)
