"""lm.attention.Linear multiplies a wide W in blocks of columns when it runs on many tokens
outside autograd (faster on a CPU); the numbers must be those of the one matmul."""

from __future__ import annotations

import pytest
import torch

from lm.attention import Linear


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
