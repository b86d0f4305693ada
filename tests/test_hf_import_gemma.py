"""Importing Gemma 3 (text, gemma3_text): random Gemma3ForCausalLM models of odd sizes, local
(windowed) and global layers mixed, every weight perturbed (the (1 + w) norm scales too),
must give transformers' logits within 1e-4 and the same greedy text, cached and uncached,
over a context longer than the window; Gemma 3 270M's shape counts its published parameters.
Nothing here downloads (tests.test_hf_import's fixtures keep the Hub offline)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lm.checkpoint import load_checkpoint
from lm.hf_import import HFImportError, gpt_config, import_hf
from lm.model import GPT
from lm.open_models import OPEN_MODELS
from lm.sizing import parameter_count
from tests.test_hf_import import greedy_text_matches, hub_offline, tokenizer_file  # noqa: F401  (fixtures)

transformers = pytest.importorskip("transformers")

LOCAL, GLOBAL = "sliding_attention", "full_attention"
MODELS = {  # head sizes of their own, an attention scale that is not the head size, GQA and MQA, tied and untied
    "tied GQA, pattern 3": dict(
        hidden_size=40, head_dim=12, intermediate_size=52, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=5, sliding_window_pattern=3, query_pre_attn_scalar=10,
        rope_parameters={LOCAL: {"rope_type": "default", "rope_theta": 50.0},
                         GLOBAL: {"rope_type": "default", "rope_theta": 500.0}}),
    "untied MQA, layer types": dict(
        hidden_size=36, head_dim=10, intermediate_size=44, num_hidden_layers=3, num_attention_heads=3,
        num_key_value_heads=1, sliding_window=4, layer_types=[GLOBAL, LOCAL, LOCAL], query_pre_attn_scalar=16,
        tie_word_embeddings=False, rope_parameters={LOCAL: {"rope_type": "default", "rope_theta": 20.0},
                                                    GLOBAL: {"rope_type": "default", "rope_theta": 1000.0}}),
}
PROMPT = "ROMEO: But soft, what light through yonder window"
NEW_TOKENS = 20


def save_random_gemma(folder: Path, name: str, tokenizer_file: Path, seed: int = 0):
    """A random Gemma3ForCausalLM saved with save_pretrained, its tokenizer beside it. Every weight
    is perturbed: the norms' w (scale 1 + w) away from 0, so a missing or doubled 1 shows."""
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tokenizer_file)).get_vocab_size()
    config = transformers.Gemma3TextConfig(vocab_size=vocab, max_position_embeddings=64, attn_implementation="eager",
                                           bos_token_id=None, eos_token_id=None, pad_token_id=None, **MODELS[name])
    torch.manual_seed(seed)
    model = transformers.Gemma3ForCausalLM(config).eval()
    with torch.no_grad():
        for p_name, p in model.named_parameters():
            if "norm" in p_name:
                p.uniform_(-0.5, 0.5)
            elif "embed" in p_name:  # small, as trained ones: × √width, a tied head would repeat the input token
                p.normal_(0.0, 0.02)
            else:
                p.normal_(0.0, 0.15)
    model.save_pretrained(folder)
    shutil.copy(tokenizer_file, folder / "tokenizer.json")
    return model


@pytest.fixture(scope="module", params=list(MODELS))
def imported(request, tmp_path_factory, tokenizer_file):  # noqa: F811
    folder = tmp_path_factory.mktemp("gemma")
    hf = save_random_gemma(folder / "model", request.param, tokenizer_file)
    return hf, load_checkpoint(import_hf(str(folder / "model"), folder / "ours"))


def test_the_config_is_gemmas_architecture(imported):
    hf, ours = imported
    config, theirs = ours.model.config, hf.config
    windowed = [layer for layer in range(config.n_layer) if config.windowed(layer)]
    assert windowed == [i for i, kind in enumerate(theirs.layer_types) if kind == LOCAL] and 0 < len(windowed) < config.n_layer
    assert [config.rope_base_of(i) for i in range(config.n_layer)] == [
        theirs.rope_parameters[kind]["rope_theta"] for kind in theirs.layer_types]
    assert (config.norm_position, config.mlp, config.qk_norm, config.scale_embeddings) == ("sandwich", "geglu", True, True)
    assert config.attn_scale_size == theirs.query_pre_attn_scalar and config.tied_head == theirs.tie_word_embeddings
    assert parameter_count(config) == sum(p.numel() for p in ours.model.parameters()) == sum(
        p.numel() for p in hf.parameters())


def test_logits_match_transformers_past_the_window(imported):
    hf, ours = imported
    ids = torch.tensor([ours.tokenizer.encode(PROMPT * 2)[:64]])
    assert ids.size(1) > 3 * ours.model.config.window
    with torch.no_grad():
        error = (ours.model(ids).logits - hf(ids).logits).abs().max().item()
    assert error < 1e-4, error


def test_greedy_text_matches_transformers_cached_and_uncached(imported):
    greedy_text_matches(*imported, PROMPT)


@pytest.mark.parametrize("change, message", [
    (dict(final_logit_softcapping=30.0), "sets final_logit_softcapping"),
    (dict(attn_logit_softcapping=50.0), "sets attn_logit_softcapping"),
    (dict(use_bidirectional_attention=True), "sets use_bidirectional_attention"),
    (dict(hidden_activation="silu"), "sets hidden_activation"),
    (dict(rope_parameters={GLOBAL: {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                           LOCAL: {"rope_type": "default", "rope_theta": 1e4}}), "'linear' rotary scaling in the global"),
])
def test_what_lm_gpt_does_not_compute_is_refused_by_name(tmp_path, tokenizer_file, change, message):  # noqa: F811
    save_random_gemma(tmp_path / "model", "tied GQA, pattern 3", tokenizer_file)
    hf = json.loads((tmp_path / "model" / "config.json").read_text()) | change
    (tmp_path / "model" / "config.json").write_text(json.dumps(hf))
    with pytest.raises(HFImportError, match=message):
        import_hf(str(tmp_path / "model"), tmp_path / "ours")
    assert not (tmp_path / "ours").exists()


@pytest.mark.parametrize("change", [dict(sliding_window_pattern=0), dict(sliding_window_pattern=None),
                                    dict(query_pre_attn_scalar=None), dict(query_pre_attn_scalar=0.5)])
def test_impossible_gemma_numbers_are_refused_by_name(change):
    """A config.json comes from anywhere: a pattern of 0 divided by zero, a null scale met int()."""
    hf = {key: value for key, value in OPEN_MODELS["gemma-3-270m"].hf_config.items() if key != "layer_types"} | change
    with pytest.raises(HFImportError, match=f"{next(iter(change))} is .*positive whole number"):
        gpt_config(hf)


def test_gemma_3_270m_has_its_published_shape():
    """The Hub's config.json (transformers 4.5x keys: rope_theta, rope_local_base_freq, no layer_types)
    as lm.open_models holds it: 268,098,176 parameters, every sixth layer global, window 512."""
    config = OPEN_MODELS["gemma-3-270m"].config()
    assert parameter_count(config) == 268_098_176
    with torch.device("meta"):
        assert sum(p.numel() for p in GPT(config).parameters()) == 268_098_176
        hf = transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(**OPEN_MODELS["gemma-3-270m"].hf_config))
    assert sum(p.numel() for p in hf.parameters()) == 268_098_176
    assert [i for i in range(18) if not config.windowed(i)] == [5, 11, 17] and config.window == 512
    assert (config.rope_base, config.rope_local_base, config.attn_scale_size) == (1_000_000.0, 10_000.0, None)
    assert gpt_config({**OPEN_MODELS["gemma-3-270m"].hf_config, "query_pre_attn_scalar": 128}).attn_scale_size == 128
