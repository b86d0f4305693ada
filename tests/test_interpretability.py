"""The logit lens, direct logit attribution, activation patching, the embedding map and neurons,
each checked against an independent computation: the model's own logits, or hooks on a private
copy of the model that read or overwrite what its modules pass on."""

from __future__ import annotations

import copy
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lm.embedding_map import embedding_map, nearest_tokens
from lm.attribution_patching import attribution_patching
from lm.lens import direct_attribution, logit_lens
from lm.mlp import ACTIVATIONS
from lm.model import GPT, GPTConfig
from lm.neurons import index_neurons, top_neurons, windows
from lm.patching import Patch, PatchingError, activation_patching, run_patched, shared_prefix
from lm.trace import UnsupportedArchitecture, trace
from tests.checkpoints import sharpen_attention, tiny_gpt

VOCAB, N_TOKENS = 64, 60  # the last 4 rows stand for a padded vocabulary: no token
CLEAN = [3, 5, 7, 9, 11, 13, 3, 5, 7]
CORRUPTED = [3, 5, 8, 9, 11, 13, 3, 5, 7]  # one token changed


LAYOUTS = {"sequential": {}, "parallel": dict(parallel_residual=True), "post-norm": dict(norm_position="post"),
           "sandwich": dict(norm_position="sandwich")}


@pytest.fixture(scope="module", params=list(LAYOUTS))
def model(request):
    """Three layers, four heads, random biases and sharp attention: nothing cancels by accident; in
    each residual layout (GPT-2's, a parallel residual as GPT-J and Pythia, post-norm, sandwich norms
    as Gemma's, here LayerNorms with a β of their own)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=32, n_layer=3, n_head=4, n_embd=32,
                          **LAYOUTS[request.param])).eval()
    with torch.no_grad():  # the norm the head reads, scaled: next-token distributions that are not flat
        last = model.transformer.h[-1].ln_2 if request.param == "post-norm" else model.transformer.ln_f
        last.weight.mul_(5.0)
        for block in model.transformer.h:  # sandwich: output norms that scale each channel their own way
            for norm in (block.ln_attn_out, block.ln_mlp_out):
                if not isinstance(norm, torch.nn.Identity):
                    norm.weight.uniform_(0.5, 2.0)
    return sharpen_attention(model, 3.0)


def own_logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def test_the_lens_at_the_last_layer_is_the_models_own_prediction(model):
    lens = logit_lens(model, CLEAN, N_TOKENS)
    probs = torch.softmax(own_logits(model, CLEAN)[:, :N_TOKENS], dim=-1)
    top = probs.topk(5, dim=-1)
    np.testing.assert_array_equal(lens.top_ids[-1], top.indices.numpy())
    np.testing.assert_allclose(lens.top_probs[-1], top.values.numpy(), rtol=1e-5)
    np.testing.assert_allclose(lens.final_probs[-1], top.values[:, 0].numpy(), rtol=1e-5)
    assert lens.rows == ("embeddings", "block 0", "block 1", "block 2")
    assert (lens.top_ids < N_TOKENS).all()


def test_the_lens_reads_each_layers_residual_through_the_final_norm(model):
    ids = torch.tensor([CLEAN])
    with torch.no_grad():
        x = model.transformer.wte(ids) + model.transformer.wpe(torch.arange(len(CLEAN)))
        after_block_0 = model.transformer.h[0](x)[0]
        expected = torch.softmax(model.lm_head(model.transformer.ln_f(after_block_0))[0, :, :N_TOKENS], -1)
    lens = logit_lens(model, CLEAN, N_TOKENS)
    np.testing.assert_allclose(lens.top_probs[1, :, 0], expected.max(-1).values.numpy(), rtol=1e-5)
    settles = lens.settles_at()
    agrees = lens.top_ids[:, :, 0] == lens.final_ids
    for t, row in enumerate(settles):
        assert agrees[row:, t].all() and (row == 0 or not agrees[row - 1, t])


def spread(norm, x: torch.Tensor) -> torch.Tensor:
    """1/σ of a LayerNorm's or an RMSNorm's input, per position."""
    if isinstance(norm, torch.nn.LayerNorm):
        return (x.var(-1, unbiased=False, keepdim=True) + norm.eps).rsqrt()
    return (x.pow(2).mean(-1, keepdim=True) + norm.eps).rsqrt()


def frozen(norm, x: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """The norm of x with its 1/σ held at `inverse`."""
    centred = x - x.mean(-1, keepdim=True) if isinstance(norm, torch.nn.LayerNorm) else x
    return centred * inverse * norm.weight + (norm.bias if getattr(norm, "bias", None) is not None else 0)


def reference_attribution(model, ids, position, target) -> dict[str, float]:
    """Each head's and MLP's direct effect from hooks on a copy: with every residual-wide norm's σ frozen at
    its value in this run and every attention's and MLP's output frozen too, the logit is affine in
    what each part writes, so a part's direct effect is the logit less the logit with that part's
    write taken out (a head's write: its slice of the projection's input times its slice of the weight)."""
    model = copy.deepcopy(model)
    spreads, outputs, removed = {}, {}, {}
    norms = [norm for norm in model.modules() if isinstance(norm, (torch.nn.LayerNorm, torch.nn.RMSNorm))
             and norm.normalized_shape == (model.config.n_embd,)]  # not QK-norm's: the attention's output is frozen
    capturing = [norm.register_forward_pre_hook(lambda m, args: spreads.__setitem__(m, spread(m, args[0])))
                 for norm in norms]
    for layer, block in enumerate(model.transformer.h):
        capturing += [
            block.attn.c_proj.register_forward_pre_hook(lambda m, args, l=layer: outputs.__setitem__(("in", l), args[0])),
            block.attn.register_forward_hook(lambda m, args, out, l=layer: outputs.__setitem__(("attn", l), out[0])),
            block.mlp.register_forward_hook(lambda m, args, out, l=layer: outputs.__setitem__(("mlp", l), out)),
        ]
    own_logits(model, ids)
    for handle in capturing:
        handle.remove()
    for norm in spreads:
        norm.register_forward_hook(lambda m, args, out: frozen(m, args[0], spreads[m]))
    for layer, block in enumerate(model.transformer.h):
        block.attn.register_forward_hook(lambda m, args, out, l=layer: (
            outputs[("attn", l)] - removed.get(("attn", l), 0), out[1]))
        block.mlp.register_forward_hook(lambda m, args, out, l=layer: outputs[("mlp", l)] - removed.get(("mlp", l), 0))

    def logit_without(part=None, write=None) -> float:
        removed.clear()
        removed.update({part: write} if part else {})
        return float(own_logits(model, ids)[position, target])

    whole, values = logit_without(), {}
    D = model.config.head_dim
    with torch.no_grad():
        for layer, block in enumerate(model.transformer.h):
            for head in range(model.config.n_head):
                cut = slice(head * D, (head + 1) * D)
                write = outputs[("in", layer)][..., cut] @ block.attn.c_proj.weight[cut]
                values[f"L{layer} H{head}"] = whole - logit_without(("attn", layer), write)
            values[f"L{layer} MLP"] = whole - logit_without(("mlp", layer), outputs[("mlp", layer)])
    return values


@pytest.mark.parametrize(("position", "target"), [(8, 7), (4, 30), (0, 59)])
def test_direct_attributions_add_up_to_the_logit_and_match_hooks(model, position, target):
    found = direct_attribution(model, CLEAN, position, target)
    logit = float(own_logits(model, CLEAN)[position, target])
    assert found.logit == pytest.approx(logit, abs=1e-5)
    assert found.values.sum() == pytest.approx(logit, abs=1e-4)
    by_label = dict(zip(found.labels, found.values))
    for label, value in reference_attribution(model, CLEAN, position, target).items():
        assert by_label[label] == pytest.approx(value, abs=1e-5), label
    post, sandwich = (model.config.norm_position == layout for layout in ("post", "sandwich"))
    assert found.kinds.count("head") == 12 and found.labels[0] == "embeddings"
    assert found.labels[-1] == ("L2 ln_2 bias" if post else "final norm bias")
    assert found.kinds.count("norm bias") == (6 if post or sandwich else 0)
    assert found.frozen_norms == {"post": 6, "sandwich": 7}.get(model.config.norm_position, 1)
    if sandwich:  # each output norm's β: its own bar, right after its sublayer's parts
        assert found.labels[found.labels.index("L1 MLP") + 1] == "L1 ln_mlp_out bias"
        assert found.labels[found.labels.index("L1 attn bias") + 1] == "L1 ln_attn_out bias"
    biggest = found.top_heads(2)
    assert abs(biggest[0][2]) >= abs(biggest[1][2]) and (biggest[0][0], biggest[0][1]) in found.heads


def test_patching_everything_gives_the_clean_run_and_nothing_the_corrupted(model):
    clean, corrupted = trace(model, CLEAN), trace(model, CORRUPTED)
    everywhere = Patch(residual={layer: tuple(range(len(CLEAN))) for layer in range(3)})
    every_head_and_last = Patch(residual={2: tuple(range(len(CLEAN)))},
                                heads=frozenset((layer, h) for layer in range(3) for h in range(4)))
    with torch.no_grad():
        final = run_patched(model, clean, corrupted, [everywhere, Patch(), every_head_and_last])
        logits = model.lm_head(model.transformer.ln_f(final))
    assert len(clean.layers) == 3 and not torch.equal(clean.final, corrupted.final)
    torch.testing.assert_close(logits[0], own_logits(model, CLEAN), rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[1], own_logits(model, CORRUPTED), rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[2], own_logits(model, CLEAN), rtol=0, atol=1e-5)

    prefix = shared_prefix(corrupted, 2)  # the prompts agree on their first two tokens
    with torch.no_grad():
        final = run_patched(model, clean, corrupted, [everywhere, Patch(), every_head_and_last], prefix)
        logits = model.lm_head(model.transformer.ln_f(final))
    assert logits.shape[1] == len(CLEAN) - 2  # only the positions after the shared ones are run
    torch.testing.assert_close(logits[0], own_logits(model, CLEAN)[2:], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[1], own_logits(model, CORRUPTED)[2:], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[2], own_logits(model, CLEAN)[2:], rtol=0, atol=1e-5)


def patched_by_hooks(model, layer, head) -> torch.Tensor:
    """The corrupted run with one head's output (its slice of the projection's input) copied from
    the clean run, by hooks on a copy of the model."""
    model = copy.deepcopy(model)
    D = model.config.head_dim
    cut = slice(head * D, (head + 1) * D)
    projection = model.transformer.h[layer].attn.c_proj
    kept = {}
    handle = projection.register_forward_pre_hook(lambda m, args: kept.__setitem__("clean", args[0][..., cut].clone()))
    own_logits(model, CLEAN)
    handle.remove()

    def overwrite(m, args):
        x = args[0].clone()
        x[..., cut] = kept["clean"]
        return (x,)

    projection.register_forward_pre_hook(overwrite)
    return own_logits(model, CORRUPTED)


def test_patching_one_head_matches_hooks_and_the_grid_measures_the_logit_difference(model):
    moved = own_logits(model, CLEAN)[-1, :N_TOKENS] - own_logits(model, CORRUPTED)[-1, :N_TOKENS]
    clean_answer, corrupted_answer = int(moved.argmax()), int(moved.argmin())  # the difference the change moves most
    found = activation_patching(model, CLEAN, CORRUPTED, N_TOKENS, (clean_answer, corrupted_answer))

    def difference(logits):
        return float(logits[-1, clean_answer] - logits[-1, corrupted_answer])

    clean, corrupted = difference(own_logits(model, CLEAN)), difference(own_logits(model, CORRUPTED))
    assert found.clean_difference == pytest.approx(clean, abs=1e-5)
    assert found.corrupted_difference == pytest.approx(corrupted, abs=1e-5)
    for layer, head in [(0, 1), (1, 3), (2, 0)]:
        expected = (difference(patched_by_hooks(model, layer, head)) - corrupted) / (clean - corrupted)
        assert found.heads[layer, head] == pytest.approx(expected, abs=1e-3)
    assert found.differ == (2,)
    assert found.residual[0, 2] == pytest.approx(1.0, abs=1e-4)  # the only difference, restored at the start
    assert (found.residual[:, :2] == 0).all()  # before it the runs are the same: patching changes nothing
    assert found.residual[0, 3:].tolist() == [0.0] * 6


def test_patching_refuses_prompts_it_cannot_compare(model):
    with pytest.raises(PatchingError, match="same number of tokens"):
        activation_patching(model, CLEAN, CLEAN[:-1], N_TOKENS)
    with pytest.raises(PatchingError, match="the same"):
        activation_patching(model, CLEAN, CLEAN, N_TOKENS)
    with pytest.raises(PatchingError, match="same answer"):
        activation_patching(model, CLEAN, CORRUPTED, N_TOKENS, (20, 20))


def test_a_layout_it_does_not_know_is_refused_rather_than_taken_apart_wrongly(model):
    unknown = copy.deepcopy(model)

    def forward(self, x, probe):  # the MLP reads the attention's output alone: no model has this layout
        attended, steps = self.attn(self.ln_1(x), probe)
        return x + attended + self.mlp(self.ln_2(attended)), steps

    for block in unknown.transformer.h:
        block.forward = types.MethodType(forward, block)
    for view in (lambda: direct_attribution(unknown, CLEAN, 3, 4), lambda: trace(unknown, CLEAN),
                 lambda: activation_patching(unknown, CLEAN, CORRUPTED, N_TOKENS, (1, 2)),
                 lambda: top_neurons(unknown, CLEAN, 2, 3)):
        with pytest.raises(UnsupportedArchitecture, match="not supported for this architecture yet"):
            view()


def test_the_embedding_map_is_the_pca_of_the_token_embeddings(model):
    found = embedding_map(model, N_TOKENS)
    vectors = model.transformer.wte.weight[:N_TOKENS].detach().double().numpy()
    centred = vectors - vectors.mean(0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ axes[:2].T
    np.testing.assert_allclose(np.abs(found.points), np.abs(expected), atol=1e-4)  # up to each axis's sign
    np.testing.assert_allclose(found.explained, (singular[:2] ** 2 / (singular**2).sum()), rtol=1e-6)
    cosine = vectors @ vectors[5] / np.linalg.norm(vectors, axis=1) / np.linalg.norm(vectors[5])
    cosine[5] = -np.inf
    near = nearest_tokens(model, 5, N_TOKENS, 4)
    assert [i for i, _ in near] == list(np.argsort(-cosine)[:4])
    assert [c for _, c in near] == pytest.approx(list(np.sort(cosine)[::-1][:4]), abs=1e-5)


def neurons_by_hooks(model, batch: list[list[int]]) -> torch.Tensor:
    """[layers, windows, T, 4 × n_embd]: GELU of each c_fc's output, recorded by hooks on a copy."""
    model = copy.deepcopy(model)
    seen = []
    for block in model.transformer.h:
        block.mlp.c_fc.register_forward_hook(lambda m, args, out: seen.append(F.gelu(out, approximate="tanh")))
    with torch.no_grad():
        model(torch.tensor(batch))
    return torch.stack(seen)


def test_top_neurons_and_the_corpus_index_match_hooks(model):
    found = top_neurons(model, CLEAN, 4, 5)
    acts = neurons_by_hooks(model, [CLEAN])[:, 0, 4]  # [layers, neurons]
    best = acts.flatten().topk(5)
    width = acts.shape[1]
    assert [(layer, neuron) for layer, neuron, _ in found] == [(i // width, i % width) for i in best.indices.tolist()]
    assert [v for *_, v in found] == pytest.approx(best.values.tolist(), abs=1e-5)

    sample = windows(list(range(1, 41)), 8, 5)
    index = index_neurons(model, sample, batch=2)
    every = neurons_by_hooks(model, sample)  # [L, W, T, F]
    for layer, neuron in [(0, 3), (2, 100)]:
        values = every[layer, :, :, neuron]
        value, w, t = index.examples(layer, neuron)[0]
        assert value == pytest.approx(float(values.max()), abs=1e-5)
        assert float(values[w, t]) == pytest.approx(value, abs=1e-5)


def test_windows_spread_over_the_text():
    ids = list(range(100))
    found = windows(ids, 10, 4)
    assert [w[0] for w in found] == [0, 30, 60, 90] and all(len(w) == 10 for w in found)
    assert windows(ids[:5], 10, 4) == [ids[:5]] and windows([], 10, 4) == []


MODERN = dict(position="rope", norm="rmsnorm", qk_norm=True, mlp="swiglu", n_kv_head=2, window=6, tied_head=False)


def test_the_decomposition_follows_the_architecture_switches_inside_the_blocks():
    """Rotary positions, RMSNorm, QK-norm, SwiGLU, grouped key/value heads, a window, an untied head:
    the parts still add up to the logit, and patching everything still gives the clean run."""
    model = sharpen_attention(tiny_gpt(VOCAB, sharpen=5.0, n_layer=2, n_head=4, **MODERN), 3.0)
    found = direct_attribution(model, CLEAN, 7, 11)
    assert found.values.sum() == pytest.approx(float(own_logits(model, CLEAN)[7, 11]), abs=1e-4)
    assert found.labels[-1] == "final norm bias" and found.values[-1] == 0.0  # RMSNorm has no β
    lens = logit_lens(model, CLEAN, N_TOKENS)
    np.testing.assert_array_equal(lens.top_ids[-1, :, 0], own_logits(model, CLEAN)[:, :N_TOKENS].argmax(-1).numpy())
    clean, corrupted = trace(model, CLEAN), trace(model, CORRUPTED)
    with torch.no_grad():
        final = run_patched(model, clean, corrupted, [Patch(residual={0: tuple(range(len(CLEAN)))})])
        torch.testing.assert_close(model.lm_head(model.transformer.ln_f(final))[0], own_logits(model, CLEAN),
                                   rtol=0, atol=1e-5)
        # the shared prefix's keys, taken from the trace: grouped key/value heads, rotated and normed
        final = run_patched(model, clean, corrupted, [Patch(heads=frozenset({(0, 1)})), Patch()],
                            shared_prefix(corrupted, 2))
        torch.testing.assert_close(model.lm_head(model.transformer.ln_f(final))[1], own_logits(model, CORRUPTED)[2:],
                                   rtol=0, atol=1e-5)
    assert len(top_neurons(model, CLEAN, 3, 4)) == 4


GEMMA = dict(position="rope", norm="rmsnorm", norm_position="sandwich", qk_norm=True, mlp="geglu",
             scale_embeddings=True, n_kv_head=2)


def test_a_gemma_style_model_is_taken_apart_through_its_frozen_output_norms():
    """Sandwich RMSNorms, GeGLU, QK-norm, embeddings × √width: attributions match hooks and add up to
    the logit, patching follows the model's own pass (the output norm then sees the patched heads)."""
    model = sharpen_attention(tiny_gpt(VOCAB, sharpen=5.0, n_layer=2, n_head=4, **GEMMA), 3.0)
    with torch.no_grad():
        for block in model.transformer.h:
            block.ln_attn_out.weight.uniform_(0.5, 2.0)
            block.ln_mlp_out.weight.uniform_(0.5, 2.0)
    found = direct_attribution(model, CLEAN, 7, 11)
    assert found.values.sum() == pytest.approx(float(own_logits(model, CLEAN)[7, 11]), abs=1e-4)
    assert found.kinds.count("norm bias") == 0 and found.frozen_norms == 5 and found.norm_position == "sandwich"
    by_label = dict(zip(found.labels, found.values))
    for label, value in reference_attribution(model, CLEAN, 7, 11).items():
        assert by_label[label] == pytest.approx(value, abs=1e-5), label

    clean, corrupted = trace(model, CLEAN), trace(model, CORRUPTED)
    with torch.no_grad():
        final = run_patched(model, clean, corrupted, [Patch(residual={0: tuple(range(len(CLEAN)))}), Patch()])
        logits = model.lm_head(model.transformer.ln_f(final))
    torch.testing.assert_close(logits[0], own_logits(model, CLEAN), rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[1], own_logits(model, CORRUPTED), rtol=0, atol=1e-5)
    moved = own_logits(model, CLEAN)[-1, :N_TOKENS] - own_logits(model, CORRUPTED)[-1, :N_TOKENS]
    answers = (int(moved.argmax()), int(moved.argmin()))  # the difference the change moves most
    patched = activation_patching(model, CLEAN, CORRUPTED, N_TOKENS, answers)
    by_hooks = patched_by_hooks(model, 1, 2)[-1]
    share = (float(by_hooks[answers[0]] - by_hooks[answers[1]]) - patched.corrupted_difference) / (
        patched.clean_difference - patched.corrupted_difference)
    assert patched.heads[1, 2] == pytest.approx(share, abs=1e-3)
    estimated = attribution_patching(model, CLEAN, CORRUPTED, N_TOKENS, answers)
    assert np.isfinite(estimated.heads).all() and not estimated.exact

    top = top_neurons(model, CLEAN, 4, 3)  # GeGLU: GELU(gate) × up, by a hook on c_fc
    seen = []
    for block in model.transformer.h:
        block.mlp.c_fc.register_forward_hook(lambda m, args, out: seen.append(ACTIVATIONS["geglu"](out)))
    own_logits(model, CLEAN)
    acts = torch.stack(seen)[:, 0, 4]
    assert [v for *_, v in top] == pytest.approx(acts.flatten().topk(3).values.tolist(), abs=1e-5)
    assert logit_lens(model, CLEAN, N_TOKENS).top_ids.shape == (3, len(CLEAN), 5)


def test_a_mixture_of_experts_is_attributed_as_one_write_per_block_and_its_neurons_are_refused():
    torch.manual_seed(0)
    settings = dict(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=2, n_embd=32)
    experts = GPT(GPTConfig(**settings, n_experts=4)).eval()
    found = direct_attribution(experts, CLEAN, 3, 4)  # a mixture's output is still one write per block
    assert found.values.sum() == pytest.approx(float(own_logits(experts, CLEAN)[3, 4]), abs=1e-4)
    with pytest.raises(UnsupportedArchitecture, match="mixtures of experts"):
        top_neurons(experts, CLEAN, 2, 3)
