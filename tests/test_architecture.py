"""The architecture dial over a grid of tiny models: every combination keeps the KV cache,
the explain path, head ablation, detectors, lm.inspect and checkpoints working, and its
parameter count is what lm.sizing says; the parts are checked against hand computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lm import inspect
from lm.attention import KVCache, Probe
from lm.checkpoint import load_checkpoint, save_checkpoint
from lm.detectors import head_scores
from lm.generate import Sampling, generate
from lm.model import GPT, ConfigError, GPTConfig
from lm.sizing import flops_per_token, kv_cache_bytes, parameter_breakdown, parameter_count
from tests.checkpoints import shakespeare_bpe

BASE = dict(block_size=24, n_layer=2, n_head=4, n_embd=32)
GRID = {
    "gpt2": {},
    "llama": dict(position="rope", norm="rmsnorm", mlp="swiglu", mlp_hidden=40, n_kv_head=2, bias=False,
                  tied_head=False, rope_base=500.0),
    "qwen3": dict(position="rope", norm="rmsnorm", qk_norm=True, mlp="swiglu", n_kv_head=1, head_size=12,
                  bias=False, norm_eps=1e-6),
    "pythia": dict(position="rope", rotary_fraction=0.25, parallel_residual=True, mlp="gelu_exact", tied_head=False),
    "gemma-like local/global": dict(position="rope", norm="rmsnorm", window=5, window_layers=[0], mlp="relu2",
                                    n_kv_head=2),
    "post-norm, windowed": dict(norm_position="post", window=6),
    "mistral-like": dict(position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, window=4, bias=False,
                         n_layer=3),
    "gemma3": dict(position="rope", rope_base=10000.0, rope_local_base=50.0, norm="rmsnorm", norm_position="sandwich",
                   qk_norm=True, mlp="geglu", mlp_hidden=40, n_kv_head=1, head_size=12, attn_scale_size=7, window=5,
                   window_layers=[0, 1], n_layer=3, bias=False, scale_embeddings=True, norm_eps=1e-6, tied_head=False),
}
PROMPT = "To be, or not"


def build(seed: int = 0, vocab_size: int = 61, **switches) -> GPT:
    """A random model of BASE's size with every weight drawn wide (norm scales and biases
    too), so attention is sharp and a mistake in any part shows in the logits."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab_size, **BASE | switches)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or ".ln_" in name:
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.3 if p.dim() > 1 else 0.1)
    return model


def ids(n: int, vocab_size: int = 61, seed: int = 1) -> torch.Tensor:
    return torch.randint(vocab_size, (1, n), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=list(GRID), ids=list(GRID))
def switches(request) -> dict:
    return GRID[request.param]


def test_parameter_count_follows_the_switches(switches):
    model = build(**switches)
    assert parameter_count(model.config) == sum(p.numel() for p in model.parameters())
    assert ("output head" in parameter_breakdown(model.config)) == (not model.config.tied_head)


def test_explain_path_equals_fused_path(switches):
    model, x = build(**switches), ids(20)
    fused, explained = model(x), model(x, probe=Probe(explain=True))
    torch.testing.assert_close(explained.logits, fused.logits, atol=1e-5, rtol=1e-5)
    steps = explained.attention[0]
    assert steps.k.shape == (1, 4, 20, model.config.head_dim)  # each query head with its group's key
    assert torch.allclose(steps.weights.sum(-1), torch.ones(1, 4, 20))


def test_cached_generation_equals_uncached(switches):
    tokenizer = shakespeare_bpe()
    model = build(vocab_size=tokenizer.vocab_size, **switches)
    settings = Sampling(temperature=0, max_new_tokens=30, stop_at_end_of_text=False)  # past the context: slides
    prompt = tokenizer.encode(PROMPT)
    cached = list(generate(model, tokenizer, prompt, settings, use_cache=True))
    uncached = list(generate(model, tokenizer, prompt, settings, use_cache=False))
    assert [s.token_id for s in cached] == [s.token_id for s in uncached] and len({s.token_id for s in cached}) > 1
    assert [s.raw_prob for s in cached] == pytest.approx([s.raw_prob for s in uncached], abs=1e-5)


def test_cached_logits_equal_a_full_pass(switches):
    model, x = build(**switches), ids(18)
    full = model(x).logits
    cache = KVCache(model.config.n_layer, model.config.block_size)
    first = model(x[:, :11], probe=Probe(cache=cache)).logits
    rest = [model(x[:, t : t + 1], probe=Probe(cache=cache)).logits for t in range(11, 18)]
    torch.testing.assert_close(torch.cat([first, *rest], dim=1), full, atol=1e-5, rtol=1e-5)


def test_outside_autograd_on_two_threads_every_path_gives_the_same_numbers(switches):
    """There lm.attention.Linear hands on its products as transposed views: every part after
    it (norms, heads, rotary, windows, the MLPs) must take them as they come."""
    model, x = build(**switches), ids(20)
    fused, explained = model(x).logits, model(x, probe=Probe(explain=True))
    pass_weights = explained.attention[0].weights
    torch.set_num_threads(2)  # the one_thread fixture puts 1 back
    with torch.inference_mode():
        torch.testing.assert_close(model(x).logits, fused, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(x, probe=Probe(explain=True)).logits, fused, atol=1e-5, rtol=1e-5)
        page = inspect.attention_pass(model, x[0].tolist(), ("weights",))
        torch.testing.assert_close(page["weights"][0], pass_weights[0], atol=1e-5, rtol=1e-5)
        cache = KVCache(model.config.n_layer, model.config.block_size)
        first = model(x[:, :11], probe=Probe(cache=cache)).logits
        rest = [model(x[:, t : t + 1], probe=Probe(cache=cache)).logits for t in range(11, 20)]
        torch.testing.assert_close(torch.cat([first, *rest], dim=1), fused, atol=1e-5, rtol=1e-5)


def test_head_ablation_on_both_paths(switches):
    model, x = build(**switches), ids(12)
    ones = torch.ones(model.config.n_layer, model.config.n_head)
    torch.testing.assert_close(model(x, probe=Probe(head_mask=ones)).logits, model(x).logits)
    off = ones.clone()
    off[0, 1] = 0
    fused = model(x, probe=Probe(head_mask=off)).logits
    torch.testing.assert_close(model(x, probe=Probe(head_mask=off, explain=True)).logits, fused, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fused, model(x).logits, atol=1e-3)


def test_inspect_detectors_and_checkpoint_round_trip(switches, tmp_path):
    tokenizer = shakespeare_bpe()
    model = build(vocab_size=tokenizer.vocab_size, **switches)
    text = tokenizer.encode("Now is the winter of our discontent made glorious")[:20]
    run = inspect.forward_pass(model, text)
    L, H, T = model.config.n_layer, model.config.n_head, len(text)
    assert run.attention.weights.shape == (L, H, T, T) and run.residuals.shape == (L, T, model.config.n_embd)
    scores = head_scores(model, text)
    assert all(s.shape == (L, H) and 0 <= s.min() and s.max() <= 1 for s in scores.values())
    loaded = load_checkpoint(save_checkpoint(tmp_path / "model", model, tokenizer)).model
    assert loaded.config == model.config
    torch.testing.assert_close(loaded(torch.tensor([text])).logits, model(torch.tensor([text])).logits)


def test_a_window_bands_the_attention_of_its_layers_only():
    model = build(**GRID["gemma-like local/global"])  # window 5 in layer 0, the whole context in layer 1
    weights = inspect.attention_weights(model, ids(16)[0].tolist())
    query, key = torch.arange(16)[:, None], torch.arange(16)[None, :]
    outside_band = key <= query - 5
    assert (weights[0][:, outside_band] == 0).all()
    assert (weights[1][:, outside_band] > 0).all()


def test_gqa_is_mha_with_each_key_value_head_repeated_for_its_group():
    gqa = build(n_kv_head=2, position="rope", bias=True)
    mha = build(position="rope", bias=True)
    C, D, group = 32, 8, 2
    with torch.no_grad():
        for g_block, m_block in zip(gqa.transformer.h, mha.transformer.h):
            m_block.load_state_dict({k: v for k, v in g_block.state_dict().items() if "c_attn" not in k}, strict=False)
            q, k, v = g_block.attn.c_attn.weight.split([C, 2 * D, 2 * D], dim=1)
            qb, kb, vb = g_block.attn.c_attn.bias.split([C, 2 * D, 2 * D])
            widen = lambda t: t.unflatten(-1, (2, D)).repeat_interleave(group, dim=-2).flatten(-2)  # noqa: E731
            m_block.attn.c_attn.weight.copy_(torch.cat([q, widen(k), widen(v)], dim=1))
            m_block.attn.c_attn.bias.copy_(torch.cat([qb, widen(kb), widen(vb)]))
        for name in ("wte", "ln_f"):
            getattr(mha.transformer, name).load_state_dict(getattr(gqa.transformer, name).state_dict())
    x = ids(20)
    torch.testing.assert_close(mha(x).logits, gqa(x).logits, atol=1e-5, rtol=1e-5)


def test_n_kv_head_equal_to_n_head_is_mha_exactly():
    mha, explicit = build(), build(n_kv_head=4)
    assert {k: v.shape for k, v in mha.state_dict().items()} == {k: v.shape for k, v in explicit.state_dict().items()}
    explicit.load_state_dict(mha.state_dict())
    x = ids(20)
    assert torch.equal(explicit(x).logits, mha(x).logits)
    assert kv_cache_bytes(GPTConfig(**BASE, n_kv_head=1)) * 4 == kv_cache_bytes(GPTConfig(**BASE))


def test_rope_scores_depend_only_on_the_distance_between_positions():
    """Layer 0's queries and keys depend on the token alone, so with rotary positions its
    scores for a text are the same wherever the text starts (learned positions: they are not)."""
    for position, same in (("rope", True), ("learned", False)):
        model, x = build(position=position), ids(8)
        alone = model(x, probe=Probe(explain=True)).attention[0].scores
        cache = KVCache(model.config.n_layer, model.config.block_size)
        model(ids(9, seed=5), probe=Probe(cache=cache))  # 9 other tokens first: the text starts at position 9
        later = model(x, probe=Probe(explain=True, cache=cache)).attention[0].scores[..., 9:]
        assert torch.allclose(later, alone, atol=1e-4) == same


def test_partial_rotary_leaves_the_other_dimensions_alone():
    model = build(**GRID["pythia"])  # head size 8, a quarter rotated: dimensions 0 and 1
    cache = KVCache(model.config.n_layer, model.config.block_size)
    model(ids(5, seed=5), probe=Probe(cache=cache))
    x = ids(3)
    shifted = model(x, probe=Probe(explain=True, cache=cache)).attention[0]
    alone = model(x, probe=Probe(explain=True)).attention[0]
    assert torch.allclose(shifted.q[..., 2:], alone.q[..., 2:]) and not torch.allclose(shifted.q[..., :2], alone.q[..., :2])


def test_rmsnorm_swiglu_relu2_against_hand_computation():
    block = build(**GRID["llama"]).transformer.h[0]
    x = torch.randn(2, 5, 32)
    w = block.ln_1.weight
    torch.testing.assert_close(block.ln_1(x), x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w)
    gate, up = block.mlp.c_fc.weight.split(40, dim=1)
    torch.testing.assert_close(block.mlp(x), (F.silu(x @ gate) * (x @ up)) @ block.mlp.c_proj.weight)
    mlp = build(mlp="relu2").transformer.h[0].mlp
    hidden = x @ mlp.c_fc.weight + mlp.c_fc.bias
    torch.testing.assert_close(mlp(x), torch.clamp(hidden, min=0) ** 2 @ mlp.c_proj.weight + mlp.c_proj.bias)


def test_residual_layouts_against_hand_computation():
    x = torch.randn(1, 6, 32)
    post = build(norm_position="post").transformer.h[0]
    mid = post.ln_1(x + post.attn(x)[0])
    torch.testing.assert_close(post(x)[0], post.ln_2(mid + post.mlp(mid)))
    parallel = build(parallel_residual=True).transformer.h[0]
    torch.testing.assert_close(parallel(x)[0], x + parallel.attn(parallel.ln_1(x))[0] + parallel.mlp(parallel.ln_2(x)))


def test_qk_norm_normalizes_each_heads_queries_and_keys():
    model = build(**GRID["qwen3"] | dict(position="learned"))
    steps = model(ids(7), probe=Probe(explain=True)).attention[1]
    w = model.transformer.h[1].attn.q_norm.weight
    rms = (steps.q / w).pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-3, rtol=0)


def test_defaults_are_gpt2_and_old_configs_load_as_gpt2():
    old = {"vocab_size": 61, **BASE, "dropout": 0.0, "bias": True}  # a config.json from before the dial
    config = GPTConfig.from_dict(old)
    assert config == GPTConfig(vocab_size=61, **BASE) and config.to_dict()["position"] == "learned"
    model = GPT(config)
    assert model.lm_head.weight is model.transformer.wte.weight and "wpe" in model.transformer
    assert sorted(parameter_breakdown(config)) == ["MLP", "attention", "layer norms", "position embedding",
                                                    "token embedding (shared with the head)"]


def test_flops_count_what_a_window_skips():
    full, windowed = GPTConfig(**BASE), GPTConfig(**BASE, window=6)
    assert flops_per_token(full, training=False) - flops_per_token(windowed, training=False) == 4 * 2 * (24 - 6) * 32


@pytest.mark.parametrize("switches, message", [
    (dict(position="alibi"), "position must be one of learned, rope"),
    (dict(mlp="reglu"), "mlp must be one of"),
    (dict(norm_position="sandwich", parallel_residual=True), "parallel_residual is a pre-norm layout"),
    (dict(rope_local_base=0.0), "rope_local_base must be a positive number"),
    (dict(attn_scale_size=0), "attn_scale_size must be a positive whole number"),
    (dict(scale_embeddings=1), "scale_embeddings must be true or false"),
    (dict(n_kv_head=3), "n_kv_head (3) must divide n_head (4)"),
    (dict(position="rope", rotary_fraction=0.1), "must give an even number"),
    (dict(rotary_fraction=0), "rotary_fraction must be in (0, 1]"),
    (dict(window_layers=[0]), "window_layers needs a window"),
    (dict(window=4, window_layers=[2]), "from 0 to 1"),
    (dict(parallel_residual=True, norm_position="post"), "parallel_residual is a pre-norm layout"),
    (dict(qk_norm="yes"), "qk_norm must be true or false"),
    (dict(mlp_hidden=0), "mlp_hidden must be a positive whole number"),
    (dict(rope_base=-1.0), "rope_base must be a positive number"),
    (dict(n_embd=30), "n_embd (30) must be divisible by n_head (4)"),
])
def test_bad_switches_are_refused_with_the_reason(switches, message):
    with pytest.raises(ConfigError) as error:
        GPTConfig(vocab_size=61, **BASE | switches).validate(training=False)
    assert message in str(error.value)


def test_a_head_size_of_its_own_frees_n_embd_from_n_head():
    model = build(n_embd=30, head_size=8)
    assert model.transformer.h[0].attn.c_proj.weight.shape == (32, 30)
    assert parameter_count(model.config) == sum(p.numel() for p in model.parameters())
