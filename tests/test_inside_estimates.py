"""The Inside the model page's fast paths against their exact counterparts: attribution patching
against patched runs (equal where the logit difference is linear in the activation), the exact
checks of the strongest cells, the lens's bf16 head, and the randomized PCA of a large vocabulary."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lm.attribution_patching import attribution_patching, check_strongest, choose_patching
from lm.embedding_map import embedding_map
from lm.lens import logit_lens
from lm.model import GPT, GPTConfig
from lm.neurons import index_neurons, windows
from lm.patching import activation_patching, exact_cost
from tests.checkpoints import sharpen_attention, tiny_gpt

VOCAB, N_TOKENS = 64, 60
CLEAN = [3, 5, 7, 9, 11, 13, 3, 5, 7]
CORRUPTED = [3, 5, 8, 9, 11, 13, 3, 5, 7]
ANSWERS = (20, 21)


@pytest.fixture(scope="module")
def model():
    return sharpen_attention(tiny_gpt(VOCAB, sharpen=5.0, n_layer=3, n_head=4), 3.0)


def linear_after_last_heads(model: GPT) -> GPT:
    """A copy whose logit difference is linear in the last layer's head outputs: the last MLP
    writes nothing and the final norm is the identity (head → projection → residual → head)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.transformer.h[-1].mlp.c_proj.weight.zero_()
        model.transformer.h[-1].mlp.c_proj.bias.zero_()
    model.transformer.ln_f = torch.nn.Identity()
    return model


def test_attribution_patching_is_exact_where_the_difference_is_linear_and_only_an_estimate_elsewhere(model):
    linear = linear_after_last_heads(model)
    estimate = attribution_patching(linear, CLEAN, CORRUPTED, N_TOKENS, ANSWERS)
    exact = activation_patching(linear, CLEAN, CORRUPTED, N_TOKENS, ANSWERS)
    assert not estimate.exact and exact.exact
    assert (estimate.clean_difference, estimate.corrupted_difference) == pytest.approx(
        (exact.clean_difference, exact.corrupted_difference), abs=1e-5)
    np.testing.assert_allclose(estimate.heads[-1], exact.heads[-1], atol=1e-4)
    assert np.abs(exact.heads[-1]).max() > 0.05  # the last layer's heads do matter here
    assert (estimate.residual[:, :2] == 0).all()  # before the change the runs are the same
    assert np.abs(estimate.residual - exact.residual).max() > 1e-2  # through attention and norms: first order only

    on_the_real_model = attribution_patching(model, CLEAN, CORRUPTED, N_TOKENS, ANSWERS)
    reference = activation_patching(model, CLEAN, CORRUPTED, N_TOKENS, ANSWERS)
    assert on_the_real_model.differ == reference.differ == (2,)
    assert np.corrcoef(on_the_real_model.heads.ravel(), reference.heads.ravel())[0, 1] > 0.5  # a useful guess


def test_attribution_patching_leaves_the_shared_model_without_gradients(model):
    attribution_patching(model, CLEAN, CORRUPTED, N_TOKENS, ANSWERS)
    assert all(p.grad is None for p in model.parameters())


def test_the_strongest_cells_checked_exactly_are_the_exact_grids_values(model):
    exact = activation_patching(model, CLEAN, CORRUPTED, N_TOKENS, ANSWERS)
    estimate = attribution_patching(model, CLEAN, CORRUPTED, N_TOKENS, ANSWERS)
    residual, heads = estimate.strongest(3)
    assert len(residual) == len(heads) == 3
    assert abs(estimate.residual[residual[0]]) == np.abs(estimate.residual).max()
    assert abs(estimate.heads[heads[0]]) >= abs(estimate.heads[heads[1]]) >= abs(estimate.heads[heads[2]])
    found_residual, found_heads = check_strongest(model, CLEAN, CORRUPTED, N_TOKENS, ANSWERS, residual, heads)
    # float32 rounding differs between batches of different sizes, magnified by the share's denominator
    np.testing.assert_allclose(found_residual, [exact.residual[cell] for cell in residual], atol=5e-4)
    np.testing.assert_allclose(found_heads, [exact.heads[cell] for cell in heads], atol=5e-4)


def test_patching_is_exact_within_the_budget_and_estimated_beyond_it(model):
    cost = exact_cost(model.config, len(CLEAN), 2)
    assert choose_patching(model, CLEAN, CORRUPTED, N_TOKENS, ANSWERS, budget=cost).exact
    assert not choose_patching(model, CLEAN, CORRUPTED, N_TOKENS, ANSWERS, budget=cost - 1).exact
    gpt2_small = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    demo = GPTConfig(vocab_size=1024, block_size=256, n_layer=4, n_head=4, n_embd=128)
    assert exact_cost(gpt2_small, 15, 10) > 1e10 >= exact_cost(demo, 64, 1)  # what the page's budget separates


def test_the_bf16_lens_gives_fp32s_guesses_and_probabilities_within_one_percent():
    model = tiny_gpt(3000, sharpen=8.0, n_embd=64, n_layer=3, block_size=64)  # peaked, and far more tokens than 32
    ids = list(range(100, 140))
    fast, exact = logit_lens(model, ids, 2990, fast=True), logit_lens(model, ids, 2990, fast=False)
    assert fast.fast and not exact.fast
    assert exact.top_probs[:, :, 0].max() > 0.3  # not flat: the normaliser is dominated by a few tokens
    np.testing.assert_array_equal(fast.top_ids, exact.top_ids)
    np.testing.assert_allclose(fast.top_probs, exact.top_probs, rtol=1e-2, atol=1e-5)
    np.testing.assert_allclose(fast.final_probs, exact.final_probs, rtol=1e-2, atol=1e-5)
    np.testing.assert_array_equal(fast.top_probs[-1], exact.top_probs[-1])  # the model's own row is fp32's


def test_the_randomized_map_finds_the_exact_principal_axes_when_they_stand_out():
    model = tiny_gpt(4000, n_embd=48)
    with torch.no_grad():  # two strong directions over the random rest
        strong = torch.randn(4000, 2) @ torch.randn(2, 48) * torch.tensor([3.0, 2.0]).repeat(24)[None]
        model.transformer.wte.weight.add_(strong)
    fast, exact = embedding_map(model, 4000, randomized=True), embedding_map(model, 4000, randomized=False)
    assert fast.randomized and not exact.randomized
    np.testing.assert_allclose(fast.explained, exact.explained, rtol=1e-4)
    np.testing.assert_allclose(fast.points, exact.points, atol=1e-3 * np.abs(exact.points).max())
    again = embedding_map(model, 4000, randomized=True)
    np.testing.assert_array_equal(again.points, fast.points)  # seeded: the same map every time


def test_the_neuron_index_reports_its_progress_batch_by_batch(model):
    seen = []
    index_neurons(model, windows(list(range(1, 41)), 8, 5), batch=2, progress=seen.append)
    assert seen == [2, 4, 5]
