"""Gemma 3's switches against hand computations (sandwich norms, GeGLU, scaled embeddings, an
attention scale of its own, a RoPE base for the windowed layers), and the Model view drawing
a Gemma3-style block as one. The grid in tests/test_architecture.py runs the same switches
through the cache, the explain path, ablation, detectors and checkpoints."""

from __future__ import annotations

import math

import torch

from explorer.model_view import block_diagram_html, config_rows, si
from lm.architectures import ARCHITECTURES
from lm.attention import Probe
from lm.gelu import gelu_tanh
from lm.model import GPT
from lm.train_config import TrainConfig
from tests.test_architecture import GRID, build, ids

GEMMA = GRID["gemma3"]  # layers 0 and 1 windowed (5), layer 2 global


def test_a_sandwich_block_normalizes_each_sublayers_output_before_adding_it():
    block = build(**GEMMA).transformer.h[0]
    x = torch.randn(1, 6, 32)
    mid = x + block.ln_attn_out(block.attn(block.ln_1(x))[0])
    torch.testing.assert_close(block(x)[0], mid + block.ln_mlp_out(block.mlp(block.ln_2(mid))))
    assert not torch.allclose(block.ln_attn_out.weight, block.ln_mlp_out.weight)  # four norms, each its own


def test_geglu_is_tanh_gelu_of_the_gate_times_up():
    mlp = build(**GEMMA).transformer.h[1].mlp
    x = torch.randn(2, 5, 32)
    gate, up = mlp.c_fc.weight.split(40, dim=1)
    torch.testing.assert_close(mlp(x), (gelu_tanh(x @ gate) * (x @ up)) @ mlp.c_proj.weight)
    torch.testing.assert_close(gelu_tanh(x), torch.nn.functional.gelu(x, approximate="tanh"))


def test_embeddings_are_scaled_by_the_square_root_of_the_width_but_the_tied_head_is_not():
    model = build(**GEMMA | dict(tied_head=True))
    x = ids(7)
    torch.testing.assert_close(model.embed(x), model.transformer.wte(x) * math.sqrt(32))
    assert model.lm_head.weight is model.transformer.wte.weight


def test_the_attention_scale_and_the_local_rope_base():
    model = build(**GEMMA)
    steps = model(ids(9), probe=Probe(explain=True)).attention[2]
    torch.testing.assert_close(steps.scores, steps.q @ steps.k.transpose(-2, -1) / math.sqrt(7))
    assert [block.attn.rope_base for block in model.transformer.h] == [50.0, 50.0, 10000.0]
    changed = build(**GEMMA | dict(rope_local_base=None))
    assert [block.attn.rope_base for block in changed.transformer.h] == [10000.0] * 3
    changed.load_state_dict(model.state_dict())
    assert not torch.allclose(changed(ids(9)).logits, model(ids(9)).logits, atol=1e-3)


def test_the_model_view_draws_a_gemma_block():
    settings = ARCHITECTURES["Gemma3-style"].settings(4) | dict(window=16, window_layers="0,1")
    config = TrainConfig(n_layer=3, n_head=4, n_embd=64, block_size=32, **settings).model_config(320)
    with torch.device("meta"):
        block = sum(p.numel() for p in GPT(config).transformer.h[0].parameters())
    drawn = block_diagram_html(config)
    for part in ("GeGLU MLP: 64 → 2 × 176 → GELU(gate) × up → 64", "on attention&#x27;s output, before the add (sandwich)",
                 "on the MLP&#x27;s output, before the add (sandwich)", "Token embedding × √64", "QK-norm",
                 "base 10000 in windowed layers, 1e+06 in the others", "Final RMSNorm", f"{si(block)} parameters each"):
        assert part in drawn, part
    gpt2 = block_diagram_html(TrainConfig(n_layer=3, n_head=4, n_embd=64, block_size=32).model_config(320))
    assert "sandwich" not in gpt2 and "√" not in gpt2
    assert {"embedding scale"} <= {row["setting"] for row in config_rows(config)}


def test_the_step_through_turns_back_with_each_layers_base_and_scores_with_the_models_scale():
    """Layer 0 is windowed (base 50), layer 2 global (base 10,000): the same token at several
    positions turns back to one query in both, and the score shown is the model's own (÷ √7)."""
    from explorer.architecture_steps import rope_rotation
    from explorer.attention_view import run_layer
    from tests.test_architecture_steps import Letters

    model = build(vocab_size=8, **GEMMA)
    for layer in (0, 2):
        run = run_layer(model, Letters(), [1, 0, 1, 0, 1], layer)
        assert run.scale_size == 7 and run.head_size == 12
        one = rope_rotation(run, model.config, 0, query=1, key=0)
        three = rope_rotation(run, model.config, 0, query=3, key=2)
        if layer == 0:  # block 0 reads the token alone: its query before the turn depends on nothing else
            torch.testing.assert_close(torch.from_numpy(one.q_before), torch.from_numpy(three.q_before), atol=1e-5, rtol=0)
        assert abs(one.score_after - run.scores[0, 1, 0]) < 1e-5
        assert abs(three.score_after - run.scores[0, 3, 2]) < 1e-5
