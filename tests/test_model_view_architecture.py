"""The Model view drawn from the actual config: a Llama-, Pythia- or post-norm block looks
different from GPT-2's, and its parameter chart and per-block count match the real model."""

from __future__ import annotations

import pytest
import torch

from explorer.architecture_text import kv_groups, kv_head_of, kv_sharing
from explorer.model_view import block_diagram_html, config_rows, parameter_figure, si
from lm.architectures import ARCHITECTURES
from lm.attention import Probe
from lm.model import GPT, GPTConfig
from lm.train_config import TrainConfig

SIZES = dict(n_layer=2, n_head=4, n_embd=64, block_size=32)


def preset(name: str, **extra) -> GPTConfig:
    return TrainConfig(**SIZES, **ARCHITECTURES[name].settings(4), **extra).model_config(320)


def real_parts(config: GPTConfig) -> tuple[int, int]:
    with torch.device("meta"):
        model = GPT(config)
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.transformer.h[0].parameters())


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_the_parameter_chart_and_block_count_match_the_real_model(name):
    config = preset(name)
    total, block = real_parts(config)
    bars = dict(zip(parameter_figure(config).data[0].y, parameter_figure(config).data[0].x))
    assert sum(bars.values()) == total
    assert ("position embedding" in bars) == (config.position == "learned")
    assert ("output head" in bars) == (not config.tied_head)
    assert f"{si(block)} parameters each" in block_diagram_html(config)


def test_a_llama_block_looks_different_from_gpt2s():
    gpt2, llama = block_diagram_html(preset("GPT-2")), block_diagram_html(preset("Llama-style"))
    for part in ("LayerNorm", "MLP: 64 → 256 → GELU → 64", "4 heads × 16", "Token embedding + position embedding",
                 "tied weights"):
        assert part in gpt2 and part not in llama, part
    for part in ("RMSNorm", "SwiGLU MLP: 64 → 2 × 176", "4 query heads × 16, 2 key/value heads", "GQA",
                 "RoPE turns q and k (base 10000)", "no position table", "untied", "Final RMSNorm"):
        assert part in llama and part not in gpt2, part


def test_pythia_post_norm_and_windowed_layouts():
    pythia = block_diagram_html(preset("Pythia-style"))
    assert "parallel residual" in pythia and "RoPE turns q and k on 4 of 16 dimensions" in pythia
    assert "GELU (exact)" in pythia
    post = block_diagram_html(GPTConfig(320, 32, 2, 4, 64, norm_position="post", window=8, window_layers=[0]))
    assert "Final LayerNorm" not in post and "after the add" in post
    assert "sliding window of 8 in layer 0" in post


def test_config_rows_name_the_switches_with_why():
    rows = {r["setting"]: r for r in config_rows(preset("Qwen3-style"))}
    assert rows["key/value heads"]["value"] == "2" and rows["key/value heads"]["meaning"] == kv_sharing(4, 2)
    assert rows["qk_norm"]["value"] == "True" and "Qwen3" in rows["qk_norm"]["meaning"]
    assert rows["rotary dims"]["value"] == "16 of 16" and rows["MLP width"]["value"] == "176"


def test_kv_groups_match_the_models_key_value_heads():
    """The explain path shows each query head the key/value head the text says it shares."""
    assert kv_groups(6, 2) == [[0, 1, 2], [3, 4, 5]] and kv_groups(4, 1) == [[0, 1, 2, 3]]
    assert "heads 0–1 share key/value head 0; heads 2–3 share key/value head 1" in kv_sharing(4, 2)
    assert kv_sharing(4, 4).startswith("MHA") and kv_sharing(4, 1).startswith("MQA")
    torch.manual_seed(0)
    attention = GPT(GPTConfig(320, 32, 1, 4, 64, n_kv_head=2)).transformer.h[0].attn  # initialised weights
    x = torch.randn(1, 5, 64)
    _, keys, _ = attention.split_heads(x)
    steps = attention(x, Probe(explain=True))[1]
    for kv_head, query_heads in enumerate(kv_groups(4, 2)):
        for head in query_heads:
            assert kv_head_of(head, 4, 2) == kv_head
            torch.testing.assert_close(steps.k[0, head], keys[0, kv_head])
