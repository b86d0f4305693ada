"""Importing open-weight models (lm.hf_import): random Llama, Mistral, Qwen3, GPT-NeoX and
GPT-2 models built by transformers with odd sizes and every weight perturbed, saved in
Hugging Face's layout, must give the same logits (within 1e-4) and the same greedy text,
cached and uncached, as lm.GPT after the import; foreign, mismatched or unsafe folders and
a missing network get a clear message. Nothing here downloads: the Hub id test replaces
the downloader, and the Hub is offline with an empty cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from huggingface_hub.errors import LocalEntryNotFoundError
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from lm.__main__ import main
from lm.checkpoint import load_checkpoint
from lm.generate import Sampling, generate
from lm.hf_import import HFImportError, download, gpt_config, import_hf
from lm.model import GPT
from lm.open_models import OPEN_MODELS
from lm.sizing import kv_cache_bytes, parameter_count
from tests.conftest import SHAKESPEARE_FILE

transformers = pytest.importorskip("transformers")

ROPE = {"rope_type": "default", "rope_theta": 500.0}
MODELS = {  # odd sizes: grouped key/value heads, head sizes of their own, windows, tied and untied heads
    "llama GQA untied": (transformers.LlamaConfig, transformers.LlamaForCausalLM, dict(
        hidden_size=48, intermediate_size=70, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
        rope_parameters=ROPE, tie_word_embeddings=False)),
    "llama biases tied": (transformers.LlamaConfig, transformers.LlamaForCausalLM, dict(
        hidden_size=36, intermediate_size=50, num_hidden_layers=2, num_attention_heads=3, attention_bias=True,
        mlp_bias=True, tie_word_embeddings=True, rms_norm_eps=1e-5)),
    "qwen3 QK-norm local/global": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM, dict(
        hidden_size=40, head_dim=12, intermediate_size=52, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, use_sliding_window=True, sliding_window=5, max_window_layers=1,
        tie_word_embeddings=True, rope_parameters=ROPE)),
    "mistral window MQA": (transformers.MistralConfig, transformers.MistralForCausalLM, dict(
        hidden_size=32, head_dim=8, intermediate_size=44, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, sliding_window=4)),
    "pythia parallel partial rotary": (transformers.GPTNeoXConfig, transformers.GPTNeoXForCausalLM, dict(
        hidden_size=48, intermediate_size=100, num_hidden_layers=2, num_attention_heads=3,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25})),
    "neox sequential tanh GELU": (transformers.GPTNeoXConfig, transformers.GPTNeoXForCausalLM, dict(
        hidden_size=40, intermediate_size=64, num_hidden_layers=2, num_attention_heads=5, use_parallel_residual=False,
        hidden_act="gelu_new", rope_parameters={"rope_type": "default", "rope_theta": 100.0,
                                                "partial_rotary_factor": 0.5})),
}
PROMPT = "ROMEO: But soft, what light"
NEW_TOKENS = 20


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch, tmp_path):
    """The Hugging Face Hub offline, with an empty cache: a test that tried to download would fail, not fetch."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer.json of 300 tokens, as SmolLM2's or Qwen's, trained here."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([SHAKESPEARE_FILE.read_text(encoding="utf-8")[:20_000]], trainer)
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def save_random(folder: Path, name: str, tokenizer_file: Path, seed: int = 0):
    """A random transformers model saved with save_pretrained, its tokenizer beside it. Every
    weight is perturbed (norm scales around 1, biases away from 0), so a swapped or skipped tensor shows."""
    config_class, model_class, sizes = MODELS[name]
    vocab = Tokenizer.from_file(str(tokenizer_file)).get_vocab_size()
    config = config_class(vocab_size=vocab, max_position_embeddings=64, attn_implementation="eager",
                          bos_token_id=None, eos_token_id=None, pad_token_id=None, **sizes)
    torch.manual_seed(seed)
    model = model_class(config).eval()
    with torch.no_grad():
        for p_name, p in model.named_parameters():
            if "norm" in p_name and p_name.endswith("weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.15 if p.dim() > 1 else 0.05)
    model.save_pretrained(folder)
    shutil.copy(tokenizer_file, folder / "tokenizer.json")
    return model


@pytest.fixture(scope="module", params=list(MODELS))
def imported(request, tmp_path_factory, tokenizer_file):
    folder = tmp_path_factory.mktemp("hf")
    hf = save_random(folder / "model", request.param, tokenizer_file)
    return hf, load_checkpoint(import_hf(str(folder / "model"), folder / "ours"))


def test_logits_match_transformers(imported):
    hf, ours = imported
    ids = torch.tensor([ours.tokenizer.encode(PROMPT * 2)])
    assert ids.size(1) > 10  # longer than every window
    torch.testing.assert_close(ours.model(ids).logits, hf(ids).logits, atol=1e-4, rtol=0)


def test_greedy_text_matches_transformers_cached_and_uncached(imported):
    greedy_text_matches(*imported, PROMPT)


def greedy_text_matches(hf, ours, text: str) -> None:
    """Our greedy continuation equals transformers', with the KV cache and without, and is not one token repeated."""
    prompt = ours.tokenizer.encode(text)
    expected = hf.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False)[0, len(prompt):].tolist()
    settings = Sampling(temperature=0, max_new_tokens=NEW_TOKENS, stop_at_end_of_text=False)
    for use_cache in (True, False):
        got = [step.token_id for step in generate(ours.model, ours.tokenizer, prompt, settings, use_cache=use_cache)]
        assert got == expected
    assert len(set(expected)) > 1


def test_the_config_is_the_models_architecture(imported):
    hf, ours = imported
    config, hf_config = ours.model.config, hf.config
    assert config.n_layer == hf_config.num_hidden_layers and config.vocab_size == hf_config.vocab_size
    assert config.position == "rope" and config.block_size == 64
    assert config.tied_head == hf_config.tie_word_embeddings
    assert sum(p.numel() for p in ours.model.parameters()) == sum(p.numel() for p in hf.parameters())


def test_gpt2_goes_through_the_same_path(tmp_path, tokenizer_file):
    from tests.test_gpt2 import hf_gpt2

    hf = hf_gpt2(tmp_path / "gpt2", 2, 3, 48, 64)
    shutil.copy(tokenizer_file, tmp_path / "gpt2" / "tokenizer.json")
    assert main(["import-hf", "--from", str(tmp_path / "gpt2"), "--out", str(tmp_path / "ours")]) == 0
    ours = load_checkpoint(tmp_path / "ours")
    ids = torch.tensor([ours.tokenizer.encode(PROMPT)])
    torch.testing.assert_close(ours.model(ids).logits, hf(ids).logits, atol=1e-4, rtol=0)


def test_the_tokenizer_is_the_models_and_shows_bytes_honestly(imported, tokenizer_file):
    _, ours = imported
    reference = Tokenizer.from_file(str(tokenizer_file))
    text = "Thou art naïve, café 🙂 señor<|endoftext|>"
    ids = ours.tokenizer.encode(text)
    assert ids == reference.encode(text).ids and ours.tokenizer.decode(ids) == text
    assert b"".join(ours.tokenizer.token_bytes(i) for i in ids) == text.encode("utf-8")
    assert ours.tokenizer.encode("<|endoftext|>") == [0] and ours.tokenizer.vocab_size == reference.get_vocab_size()


def test_a_sentencepiece_style_vocabulary_shows_spaces_and_bytes(tmp_path):
    from tokenizers.implementations import SentencePieceBPETokenizer

    from lm.hf_tokenizer import HFTokenizer

    trained = SentencePieceBPETokenizer()
    trained.train_from_iterator([SHAKESPEARE_FILE.read_text(encoding="utf-8")[:20_000]], vocab_size=300,
                                special_tokens=["<0x0A>"])
    trained.save(str(tmp_path / "tokenizer.json"))
    tokenizer = HFTokenizer.from_folder(tmp_path, "sp")
    ids = tokenizer.encode("To be or not")
    assert b"".join(tokenizer.token_bytes(i) for i in ids) == b" To be or not"  # SentencePiece's leading space
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    data["added_tokens"] = []  # a byte token that is an ordinary vocabulary entry, as Llama's
    assert HFTokenizer(data).token_bytes(data["model"]["vocab"]["<0x0A>"]) == b"\n"


def test_context_is_cut_to_a_sensible_length():
    hf = dict(model_type="llama", vocab_size=10, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=20, max_position_embeddings=40_960)
    assert gpt_config(hf).block_size == 2048 and gpt_config(hf, context=100).block_size == 100
    with pytest.raises(HFImportError, match="between 1 and the 40,960 positions"):
        gpt_config(hf, context=50_000)


@pytest.mark.parametrize("change, message", [
    (lambda hf: hf.update(model_type="bloom"), "describes a 'bloom' model"),
    (lambda hf: hf.update(intermediate_size=71), "model.layers.0.mlp.gate_proj.weight has shape [70, 48]; config.json's sizes need [71, 48]"),
    (lambda hf: hf.update(rope_parameters={"rope_type": "llama3", "rope_theta": 500.0}), "'llama3' rotary scaling"),
    (lambda hf: hf.update(hidden_act="gelu"), "hidden_act 'gelu'"),
    (lambda hf: hf.update(num_hidden_layers=1), "unexpected model.layers.1"),
    (lambda hf: hf.update(num_key_value_heads=4), "n_kv_head (4) must divide n_head (6)"),
    (lambda hf: hf.update(num_attention_heads=0), "num_attention_heads is 0; lm.GPT takes a positive whole number"),
    (lambda hf: hf.pop("hidden_size"), "config.json has no hidden_size"),
    (lambda hf: hf.update(layer_types="sliding_attention"), "layer_types must be a list of each layer's kind"),
    (lambda hf: hf.update(rope_parameters={"rope_theta": "fast"}), "a value of the wrong type for a llama model (could not"),
])
def test_a_config_that_does_not_fit_the_weights_is_refused(tmp_path, tokenizer_file, change, message):
    save_random(tmp_path / "model", "llama GQA untied", tokenizer_file)
    hf = json.loads((tmp_path / "model" / "config.json").read_text())
    change(hf)
    (tmp_path / "model" / "config.json").write_text(json.dumps(hf))
    with pytest.raises(HFImportError) as error:
        import_hf(str(tmp_path / "model"), tmp_path / "ours")
    assert message in str(error.value)
    assert not (tmp_path / "ours").exists()


def test_unsafe_or_incomplete_folders_are_refused(tmp_path, tokenizer_file):
    folder = tmp_path / "model"
    save_random(folder, "llama biases tied", tokenizer_file)
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "config.json").write_text("{}")
    with pytest.raises(HFImportError, match="already holds a model"):
        import_hf(str(folder), tmp_path / "ours")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(HFImportError, match="no tokenizer.json"):
        import_hf(str(folder), tmp_path / "other")
    shutil.copy(tokenizer_file, folder / "tokenizer.json")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(HFImportError, match="pytorch_model.bin: pickles"):
        import_hf(str(folder), tmp_path / "other")
    with pytest.raises(HFImportError, match="not a Hugging Face model id"):
        import_hf(str(tmp_path / "nowhere" / "at" / "all"))


def test_a_truncated_weights_file_is_refused_by_name(tmp_path, tokenizer_file):
    folder = tmp_path / "model"
    save_random(folder, "llama biases tied", tokenizer_file)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(HFImportError, match="truncated, corrupt"):
        import_hf(str(folder), tmp_path / "ours")
    assert not (tmp_path / "ours").exists()


def test_a_hub_id_goes_through_the_downloader(tmp_path, tokenizer_file):
    hf = save_random(tmp_path / "cache" / "snapshot", "pythia parallel partial rotary", tokenizer_file)
    asked = {}

    def fake_downloader(repo_id, revision, allow_patterns):
        asked.update(repo_id=repo_id, revision=revision, patterns=allow_patterns)
        return str(tmp_path / "cache" / "snapshot")

    folder = import_hf("EleutherAI/pythia-tiny", tmp_path / "ours", revision="step1000", downloader=fake_downloader)
    assert asked["repo_id"] == "EleutherAI/pythia-tiny" and asked["revision"] == "step1000"
    assert not any(p.endswith((".bin", ".pt")) for p in asked["patterns"])
    checkpoint = load_checkpoint(folder)
    assert checkpoint.training["hugging_face_repo"] == "EleutherAI/pythia-tiny"
    ids = torch.tensor([checkpoint.tokenizer.encode(PROMPT)])
    torch.testing.assert_close(checkpoint.model(ids).logits, hf(ids).logits, atol=1e-4, rtol=0)


def test_offline_the_download_fails_clearly(tmp_path):
    def offline(**_):
        raise LocalEntryNotFoundError("no connection")

    with pytest.raises(HFImportError, match="no network, or offline mode .* import that folder"):
        download("HuggingFaceTB/SmolLM2-135M", downloader=offline)
    with pytest.raises(HFImportError, match="could not download HuggingFaceTB/SmolLM2-135M"):
        download("HuggingFaceTB/SmolLM2-135M")  # the real downloader, offline with an empty cache


def test_the_command_line_reports_errors_without_a_traceback(tmp_path, capsys):
    assert main(["import-hf", "--from", str(tmp_path / "missing"), "--out", str(tmp_path / "ours")]) == 1
    assert "not a Hugging Face model id" in capsys.readouterr().err


@pytest.mark.parametrize("name, published", [
    ("smollm2-135m", 134_515_008), ("smollm2-360m", 361_821_120), ("qwen3-0.6b", 596_049_920),
    ("pythia-70m", 70_426_624), ("pythia-160m", 162_322_944),
])
def test_known_models_have_their_published_parameter_counts(name, published):
    """Counted from the config alone (lm.sizing follows every switch), against the counts the models' authors give."""
    config = OPEN_MODELS[name].config()
    assert parameter_count(config) == published
    with torch.device("meta"):
        assert sum(p.numel() for p in GPT(config).parameters()) == published
    grouped = config.n_head // config.kv_heads
    assert kv_cache_bytes(config) * grouped == kv_cache_bytes(gpt_config({**OPEN_MODELS[name].hf_config,
                                                                          "num_key_value_heads": config.n_head}))
