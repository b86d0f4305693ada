"""lm.gelu.gelu_tanh is GPT-2's GELU: the same values and gradients as PyTorch's tanh form."""

import pytest
import torch
import torch.nn.functional as F

from lm.gelu import gelu_tanh


def reference(x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """F.gelu's tanh form in fp64: its values and the gradient of sum(grad * gelu(x))."""
    x64 = x.detach().double().requires_grad_()
    y = F.gelu(x64, approximate="tanh")
    y.backward(grad.double())
    return y.detach(), x64.grad


def ours(x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    y = gelu_tanh(x)
    y.backward(grad)
    return y.detach(), x.grad


def test_values_and_gradients_match_gpt2_gelu_in_fp32():
    torch.manual_seed(0)
    x = torch.cat([torch.randn(4096) * 3, torch.linspace(-30, 30, 601), torch.tensor([0.0, -0.0, 1e-8, -1e-8])])
    grad = torch.randn_like(x)
    y, dx = ours(x, grad)
    y_ref, dx_ref = reference(x, grad)
    assert y.dtype == dx.dtype == torch.float32
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(dx.double(), dx_ref, rtol=1e-5, atol=1e-5)
    # far out it is x (positive) or exactly 0 (negative), as the tanh form is
    assert y[x > 20].equal(x[x > 20]) and (y[x < -20] == 0).all()


def test_bf16_is_as_close_to_fp32_as_pytorchs_own_bf16_kernel():
    torch.manual_seed(1)
    x = (torch.randn(20_000) * 3).bfloat16()
    grad = torch.randn_like(x)
    y, dx = ours(x, grad)
    y_ref, dx_ref = reference(x, grad)
    x_t = x.detach().clone().requires_grad_()
    torch_y = F.gelu(x_t, approximate="tanh")
    torch_y.backward(grad)
    assert y.dtype == dx.dtype == torch.bfloat16
    for got, theirs, exact in ((y, torch_y.detach(), y_ref), (dx, x_t.grad, dx_ref)):
        ours_error = (got.double() - exact).abs().max()
        torch_error = (theirs.double() - exact).abs().max()
        assert ours_error <= torch_error * 1.01 + 1e-12


def test_gradcheck_in_fp64():
    x = torch.randn(64, dtype=torch.float64, requires_grad=True) * 2
    assert torch.autograd.gradcheck(gelu_tanh, (x.detach().requires_grad_(),))


@pytest.mark.parametrize("shape", [(3, 5, 8), (2, 7)])
def test_keeps_shape_and_works_without_grad(shape):
    x = torch.randn(shape)
    with torch.no_grad():
        y = gelu_tanh(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, F.gelu(x, approximate="tanh"), rtol=1e-6, atol=1e-6)
