"""Tests for lm.inspect: every number it keeps is the model's own (its logits, its attention
steps, its residual stream, block by block), ablation silences exactly the heads asked for,
and the shared model is never changed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lm.attention import Probe
from lm.inspect import attention_weights, forward_pass, head_mask, last_token_attention, predict
from lm.model import GPT, GPTConfig
from tests.checkpoints import sharpen_attention

N_TOKENS = 50  # the tokenizer's ids; the model's vocabulary is padded past them


@pytest.fixture(scope="module")
def model() -> GPT:
    """A random GPT in eval mode, biases and sharper attention than at initialisation."""
    torch.manual_seed(0)
    return sharpen_attention(GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=3, n_head=2, n_embd=16)).eval(), 10)


def ids_of(length: int, seed: int = 1) -> list[int]:
    return torch.randint(N_TOKENS, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


def state(model: GPT) -> dict[str, torch.Tensor]:
    return {name: p.clone() for name, p in model.state_dict().items()}


def assert_untouched(model: GPT, before: dict[str, torch.Tensor]) -> None:
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())
    assert not model.training and all(p.grad is None for p in model.parameters())


@torch.no_grad()
def test_forward_pass_keeps_the_models_own_numbers(model):
    ids = ids_of(11)
    before = state(model)
    run = forward_pass(model, ids)
    assert_untouched(model, before)
    idx = torch.tensor([ids])
    own = model(idx, probe=Probe(explain=True))
    torch.testing.assert_close(run.logits, own.logits[0], atol=1e-6, rtol=0)
    L, H, T, d = 3, 2, 11, 8
    assert run.ids == tuple(ids)
    assert run.attention.q.shape == run.attention.k.shape == run.attention.v.shape == (L, H, T, d)
    assert run.attention.weights.shape == run.attention.masked.shape == (L, H, T, T)
    assert run.residuals.shape == (L, T, 16)
    for layer, steps in enumerate(own.attention):
        torch.testing.assert_close(run.attention.weights[layer], steps.weights[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(run.attention.output[layer], steps.output[0], atol=1e-6, rtol=0)
    # q, k and v are the ones the scores and the output were made from
    a = run.attention
    torch.testing.assert_close(a.q @ a.k.transpose(-2, -1) / math.sqrt(d), a.scores, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(a.weights @ a.v, a.output, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_residuals_are_the_stream_after_each_block(model):
    ids = ids_of(9)
    run = forward_pass(model, ids)
    parts = model.transformer
    x = parts.wte(torch.tensor([ids])) + parts.wpe(torch.arange(len(ids)))
    for layer, block in enumerate(parts.h):  # each block, called on its own, takes one residual to the next
        x, _ = block(x)
        torch.testing.assert_close(run.residuals[layer], x[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(model.lm_head(parts.ln_f(run.residuals[-1])), run.logits, atol=1e-5, rtol=0)


def test_a_plain_forward_keeps_nothing(model):
    out = model(torch.tensor([ids_of(5)]))
    assert out.attention is None and out.residuals is None


def test_forward_pass_refuses_more_tokens_than_the_context(model):
    with pytest.raises(ValueError, match="1 to 16 tokens"):
        forward_pass(model, ids_of(17))
    with pytest.raises(ValueError, match="1 to 16 tokens"):
        forward_pass(model, [])


def test_attention_weights_read_the_last_window(model):
    ids = ids_of(40)
    weights = attention_weights(model, ids)
    assert weights.shape == (3, 2, 16, 16)
    torch.testing.assert_close(weights, forward_pass(model, ids[-16:]).attention.weights, atol=0, rtol=0)
    last = last_token_attention(model, ids)
    assert isinstance(last, np.ndarray) and last.shape == (3, 2, 16)
    np.testing.assert_array_equal(last, weights[:, :, -1].numpy())
    np.testing.assert_allclose(last.sum(-1), 1.0, atol=1e-5)


def test_head_mask():
    mask = head_mask(3, 4, heads_off=[(0, 1), (2, 3)], layers_off=[1])
    expected = torch.ones(3, 4)
    expected[0, 1] = expected[2, 3] = 0
    expected[1] = 0
    assert torch.equal(mask, expected)
    assert torch.equal(head_mask(2, 2), torch.ones(2, 2))


@torch.no_grad()
def test_predict_is_the_models_loss_and_next_token(model):
    ids = ids_of(12)
    before = state(model)
    prediction = predict(model, ids, N_TOKENS)
    assert_untouched(model, before)
    logits = model(torch.tensor([ids])).logits[0, :, :N_TOKENS]
    losses = F.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="none")
    np.testing.assert_allclose(prediction.losses, losses.numpy(), atol=1e-5)
    np.testing.assert_allclose(prediction.next_probs, torch.softmax(logits[-1], -1).numpy(), atol=1e-6)
    assert prediction.next_probs.shape == (N_TOKENS,)
    assert prediction.mean_loss == pytest.approx(float(losses.mean()), abs=1e-5)
    assert math.isnan(predict(model, ids[:1], N_TOKENS).mean_loss)  # one token: nothing to predict


@torch.no_grad()
def test_predict_silences_exactly_the_heads_asked_for(model):
    ids = ids_of(12)
    heads_off, layers_off = [(0, 1)], [2]
    before = state(model)
    ablated = predict(model, ids, N_TOKENS, heads_off, layers_off)
    assert_untouched(model, before)  # the mask is an argument, never a change to the model
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    logits = model(torch.tensor([ids]), probe=Probe(head_mask=mask)).logits[0, :, :N_TOKENS]
    np.testing.assert_allclose(ablated.next_probs, torch.softmax(logits[-1], -1).numpy(), atol=1e-6)
    assert np.abs(ablated.losses - predict(model, ids, N_TOKENS).losses).max() > 1e-3
    np.testing.assert_array_equal(predict(model, ids, N_TOKENS).losses, predict(model, ids, N_TOKENS, []).losses)
