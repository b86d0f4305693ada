"""Tests for lm.attention through the whole model: the step-by-step path against the
fused kernel, the stages it keeps against a computation done by hand, the causal
mask, the KV cache and head ablation."""

from __future__ import annotations

import math

import pytest
import torch

from lm.attention import KVCache, Probe, causal_mask
from lm.model import GPT, GPTConfig

ATOL = 1e-5

# (batch, T, n_head, n_embd, bias): odd head counts, a single token, a full context
SHAPES = [
    (1, 1, 1, 8, True),
    (2, 9, 3, 24, False),
    (3, 16, 5, 40, True),
    (2, 13, 7, 28, False),
    (1, 16, 4, 32, True),
]
SHAPE_IDS = [f"B{b}-T{t}-h{h}-C{c}-{'bias' if bias else 'nobias'}" for b, t, h, c, bias in SHAPES]


def tiny_gpt(seed: int = 0, **config) -> GPT:
    """A random GPT in eval mode; biases are given random values so they matter."""
    settings = dict(vocab_size=61, block_size=16, n_layer=2, n_head=3, n_embd=24) | config
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**settings)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0.0, 0.1)
    return model


def tokens(model: GPT, batch: int, T: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(model.config.vocab_size, (batch, T), generator=torch.Generator().manual_seed(seed))


def capture_attention(model: GPT) -> tuple[list, list]:
    """Hooks recording, per layer call, what each attention module received and returned."""
    inputs, outputs = [], []

    def record(module, args, out) -> None:
        inputs.append(args[0])
        outputs.append(out[0])

    for block in model.transformer.h:
        block.attn.register_forward_hook(record)
    return inputs, outputs


def by_hand_qkv(attn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values [B, heads, T, d] from the layer's c_attn weights, with einsum."""
    B, T, C = x.shape
    qkv = torch.einsum("btc,co->bto", x, attn.c_attn.weight)  # weights stored [in, out], as GPT-2's
    if attn.c_attn.bias is not None:
        qkv = qkv + attn.c_attn.bias
    q, k, v = qkv.split(C, dim=-1)
    return tuple(t.reshape(B, T, attn.n_head, C // attn.n_head).permute(0, 2, 1, 3) for t in (q, k, v))


@pytest.mark.parametrize("batch, T, n_head, n_embd, bias", SHAPES, ids=SHAPE_IDS)
@torch.no_grad()
def test_explained_path_matches_fused_kernel(batch, T, n_head, n_embd, bias):
    model = tiny_gpt(n_head=n_head, n_embd=n_embd, bias=bias, n_layer=3)
    idx = tokens(model, batch, T)
    _, fused_layers = capture_attention(model)
    fused = model(idx)
    explained = model(idx, probe=Probe(explain=True))
    explained_layers = fused_layers[model.config.n_layer :]
    assert fused.attention is None
    assert len(explained.attention) == model.config.n_layer
    torch.testing.assert_close(explained.logits, fused.logits, atol=ATOL, rtol=0)
    for fused_out, explained_out in zip(fused_layers[: model.config.n_layer], explained_layers, strict=True):
        torch.testing.assert_close(explained_out, fused_out, atol=ATOL, rtol=0)


@pytest.mark.parametrize("batch, T, n_head, n_embd, bias", SHAPES, ids=SHAPE_IDS)
@torch.no_grad()
def test_stages_match_a_computation_by_hand(batch, T, n_head, n_embd, bias):
    model = tiny_gpt(n_head=n_head, n_embd=n_embd, bias=bias)
    inputs, _ = capture_attention(model)
    out = model(tokens(model, batch, T), probe=Probe(explain=True))
    d = n_embd // n_head
    below = torch.tensor([[j <= i for j in range(T)] for i in range(T)])
    for block, x, steps in zip(model.transformer.h, inputs, out.attention, strict=True):
        q, k, v = by_hand_qkv(block.attn, x)
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(d)
        assert steps.scores.shape == steps.masked.shape == steps.weights.shape == (batch, n_head, T, T)
        torch.testing.assert_close(steps.scores, scores, atol=ATOL, rtol=1e-5)
        # the future is masked: -inf in `masked`, exactly 0 in `weights`; the past keeps its score
        assert torch.equal(steps.masked[..., ~below], torch.full_like(steps.masked[..., ~below], float("-inf")))
        assert torch.equal(steps.masked[..., below], steps.scores[..., below])
        assert torch.all(steps.weights[..., ~below] == 0)
        torch.testing.assert_close(steps.weights.sum(-1), torch.ones(batch, n_head, T), atol=1e-6, rtol=0)
        exp = torch.exp(scores - scores.amax(-1, keepdim=True)) * below
        weights = exp / exp.sum(-1, keepdim=True)
        torch.testing.assert_close(steps.weights, weights, atol=ATOL, rtol=1e-5)
        torch.testing.assert_close(steps.output, torch.einsum("bhqk,bhkd->bhqd", weights, v), atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("t_query, t_key", [(1, 1), (5, 5), (1, 7), (3, 7), (4, 12), (2, 3)])
def test_causal_mask_for_cached_queries(t_query, t_key):
    # query i sits at absolute position t_key - t_query + i and sees keys 0..that position
    expected = [[j <= t_key - t_query + i for j in range(t_key)] for i in range(t_query)]
    mask = causal_mask(t_query, t_key)
    assert mask.dtype == torch.bool
    assert mask.tolist() == expected


@pytest.mark.parametrize("chunks", [(7, 1, 4), (1,) * 12, (5, 7), (12,), (1, 2, 3, 4, 2)])
@pytest.mark.parametrize("explain", [False, True], ids=["fused", "explain"])
@torch.no_grad()
def test_cached_chunks_give_the_full_forward(chunks, explain):
    model = tiny_gpt(n_layer=3, n_head=3, n_embd=24)
    idx = tokens(model, 2, sum(chunks))
    full = model(idx, probe=Probe(explain=True))
    cache, start, logits = KVCache(model.config.n_layer, model.config.block_size), 0, []
    for size in chunks:
        out = model(idx[:, start : start + size], probe=Probe(explain=explain, cache=cache))
        logits.append(out.logits)
        if explain:  # each chunk's weight rows are the full forward's rows for those positions
            for layer_full, layer_chunk in zip(full.attention, out.attention, strict=True):
                expected = layer_full.weights[:, :, start : start + size, : start + size]
                torch.testing.assert_close(layer_chunk.weights, expected, atol=ATOL, rtol=0)
                # q is the chunk's; k and v are every position so far, the cached ones included
                torch.testing.assert_close(layer_chunk.q, layer_full.q[:, :, start : start + size], atol=ATOL, rtol=0)
                for part in ("k", "v"):
                    expected = getattr(layer_full, part)[:, :, : start + size]
                    torch.testing.assert_close(getattr(layer_chunk, part), expected, atol=ATOL, rtol=0)
        start += size
        assert len(cache) == start
    torch.testing.assert_close(torch.cat(logits, dim=1), full.logits, atol=ATOL, rtol=0)


def test_cache_fills_its_buffer_in_place_and_refuses_overflow():
    cache = KVCache(n_layer=1, capacity=4)
    k, v = torch.randn(1, 2, 3, 5), torch.randn(1, 2, 3, 5)
    cache.extend(0, k, v)
    buffer = cache.keys[0]
    more_keys, _ = cache.extend(0, k[:, :, :1], v[:, :, :1])
    assert cache.keys[0] is buffer and len(cache) == 4  # no new allocation
    torch.testing.assert_close(more_keys, torch.cat([k, k[:, :, :1]], dim=2))
    with pytest.raises(ValueError, match="holds 4 positions"):
        cache.extend(0, k[:, :, :1], v[:, :, :1])

def _merge_heads(y: torch.Tensor) -> torch.Tensor:
    B, H, T, d = y.shape
    return y.transpose(1, 2).reshape(B, T, H * d)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("explain", [False, True], ids=["fused", "explain"])
@torch.no_grad()
def test_head_mask(bias, explain):
    model = tiny_gpt(n_layer=2, n_head=3, n_embd=24, bias=bias)
    L, H = model.config.n_layer, model.config.n_head
    idx = tokens(model, 2, 11)
    baseline = model(idx, probe=Probe(explain=explain)).logits

    ones = model(idx, probe=Probe(explain=explain, head_mask=torch.ones(L, H))).logits
    torch.testing.assert_close(ones, baseline, atol=0, rtol=0)

    one_off = torch.ones(L, H)
    one_off[0, 2] = 0
    assert (model(idx, probe=Probe(explain=explain, head_mask=one_off)).logits - baseline).abs().max() > 1e-3

    layer_off = torch.ones(L, H)
    layer_off[1] = 0
    _, outputs = capture_attention(model)
    model(idx, probe=Probe(explain=explain, head_mask=layer_off))
    proj_bias = model.transformer.h[1].attn.c_proj.bias
    expected = torch.zeros_like(outputs[1]) + (proj_bias if bias else 0)
    assert torch.equal(outputs[1], expected)  # a silenced layer adds only its output projection's bias
    assert not torch.equal(outputs[0], torch.zeros_like(outputs[0]) + (proj_bias if bias else 0))


@torch.no_grad()
def test_head_mask_zeroes_exactly_the_masked_heads_slices():
    model = tiny_gpt(n_layer=2, n_head=3, n_embd=24)
    mask = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    _, outputs = capture_attention(model)
    out = model(tokens(model, 2, 9), probe=Probe(explain=True, head_mask=mask))
    for block, steps, got, layer_mask in zip(model.transformer.h, out.attention, outputs, mask, strict=True):
        kept = steps.output * layer_mask.view(1, -1, 1, 1)
        torch.testing.assert_close(got, block.attn.c_proj(_merge_heads(kept)), atol=ATOL, rtol=0)
