"""lm.attention.Linear, on several tokens outside autograd on a CPU, multiplies in the order that
was faster there: transposed on several threads (up to TRANSPOSED_TOKENS tokens), a wide W in
blocks of columns on one. The numbers must be those of the one matmul."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lm.attention import Linear
from tests.checkpoints import tiny_gpt


@pytest.mark.parametrize("bias", [True, False])
def test_column_blocks_give_the_one_matmuls_numbers(bias):
    torch.manual_seed(0)
    layer = Linear(24, 2 * Linear.COLUMN_BLOCK + 5, bias=bias)  # two whole blocks and a part
    torch.nn.init.normal_(layer.weight)
    if bias:
        torch.nn.init.normal_(layer.bias)
    x = torch.randn(3, 9, 24)
    whole = layer(x)  # under autograd: one matmul
    assert whole.requires_grad
    with torch.inference_mode():
        blocked = layer(x)
        assert torch.allclose(blocked, whole, atol=1e-5, rtol=0)
        assert torch.equal(blocked, layer.by_column_blocks(x.reshape(-1, 24)).view(3, 9, -1))
        assert blocked.shape == (3, 9, layer.weight.size(1))


@pytest.mark.parametrize("bias", [True, False])
def test_on_several_threads_the_transposed_product_gives_the_one_matmuls_numbers(bias):
    torch.manual_seed(0)
    layer = Linear(24, 40, bias=bias)
    torch.nn.init.normal_(layer.weight)
    if bias:
        torch.nn.init.normal_(layer.bias)
    x = torch.randn(3, 9, 24)
    whole = layer(x)
    torch.set_num_threads(2)  # the one_thread fixture puts 1 back
    with torch.inference_mode():
        out = layer(x)
    assert out.shape == (3, 9, 40) and out.stride(-1) == 27  # the transposed view: tokens side by side
    assert torch.allclose(out, whole, atol=1e-5, rtol=0)
    many = torch.randn(1, Linear.TRANSPOSED_TOKENS + 1, 24)
    with torch.inference_mode():
        assert layer(many).is_contiguous()  # on many tokens the plain order was the faster
    torch.set_num_threads(1)
    with torch.inference_mode():
        assert layer(x).is_contiguous()  # one thread, narrow W: the one matmul


def test_on_several_threads_the_fused_attention_kernel_gets_each_heads_rows_contiguous(monkeypatch):
    """A CPU's fused attention kernel takes its fast path only on such rows (else its math path,
    several times slower): the transposed products' queries, keys and values must not reach it as they come."""
    model, x = tiny_gpt(64, n_kv_head=1, position="rope"), torch.randint(0, 64, (2, 12))
    seen, fused = [], F.scaled_dot_product_attention

    def spy(q, k, v, **options):
        seen.append([t.stride(-1) for t in (q, k, v)])
        return fused(q, k, v, **options)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    torch.set_num_threads(2)  # the one_thread fixture puts 1 back
    with torch.inference_mode():
        model(x)
    assert seen == [[1, 1, 1]] * model.config.n_layer


def test_under_autocast_the_one_matmul_runs_as_autocast_says():
    """Autocast passes by a matmul given out=, so blocks would multiply in fp32, or fail on a
    bf16 input (a bf16 training run's evaluation under no_grad): there Linear keeps its one matmul."""
    torch.manual_seed(0)
    layer = Linear(24, 2 * Linear.COLUMN_BLOCK + 5)
    torch.nn.init.normal_(layer.weight)
    x = torch.randn(3, 9, 24)
    torch.set_num_threads(2)  # neither order runs under autocast, on any number of threads
    with torch.autocast("cpu", dtype=torch.bfloat16):
        whole = layer(x)  # under autograd: one matmul, in bf16
        with torch.no_grad():
            for given in (x, x.bfloat16()):
                out = layer(given)
                assert out.dtype == torch.bfloat16
                assert torch.equal(out, whole)
