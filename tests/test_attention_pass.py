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


@pytest.mark.parametrize("settings", ARCHITECTURES.values(), ids=ARCHITECTURES.keys())
def test_the_pass_stops_after_the_last_attention_it_needs(settings):
    """Nothing after the last kept layer's attention changes the kept numbers, so the page's
    pass skips the last block's MLP and the step-through's pass every block after its layer."""
    model = tiny_gpt(97, seed=4, **settings)
    ids = list(range(10))
    ran: list[str] = []
    for i, block in enumerate(model.transformer.h):
        block.attn.register_forward_pre_hook(lambda *_, i=i: ran.append(f"attn {i}"))
        block.mlp.register_forward_hook(lambda *_, i=i: ran.append(f"mlp {i}"))
    last = model.config.n_layer - 1
    attention_pass(model, ids, ("weights",))
    assert ran[-2:] == [f"mlp {last - 1}", f"attn {last}"]
    ran.clear()
    attention_pass(model, ids, layer=0)
    assert ran == ["attn 0"]
    ran.clear()
    forward_pass(model, ids)  # the whole pass still runs every block
    assert ran[-1] == f"mlp {last}" and len(ran) == 2 * model.config.n_layer
