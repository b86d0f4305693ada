"""Tests for lm.checkpoint: a save/load round trip that changes nothing, the files on
disk, and a clear CheckpointError (never code execution) for every bad folder."""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lm.checkpoint import CheckpointError, load_checkpoint, read_config, save_checkpoint
from lm.model import GPT
from lm.tokenizer import TiktokenTokenizer
from tests.checkpoints import make_checkpoint, shakespeare_bpe, tiny_gpt

TEXT = "To be, or not to be: naïve café 🙂<|endoftext|>That is the question."
FILES = ["config.json", "manifest.json", "model.safetensors", "tokenizer.json"]
TOKENIZERS = {"own-bpe": shakespeare_bpe, "r50k_base": lambda: TiktokenTokenizer("r50k_base")}


def random_model(vocab_size: int, seed: int = 0, **config) -> GPT:
    """A GPT whose every parameter (biases and LayerNorms included) is random, so a
    tensor that failed to load could not match by coincidence."""
    model = tiny_gpt(vocab_size, seed, **config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    return model


@pytest.mark.parametrize(
    "config", [dict(), dict(n_head=3, n_embd=24, bias=False, dropout=0.1)], ids=["default", "nobias-3heads"]
)
@pytest.mark.parametrize("tokenizer_name", TOKENIZERS)
@torch.no_grad()
def test_round_trip(tmp_path, tokenizer_name, config):
    tokenizer = TOKENIZERS[tokenizer_name]()
    model = random_model(tokenizer.vocab_size, **config)
    training = {"data": "tinyshakespeare", "steps": 12, "lr": 3e-4}
    assert save_checkpoint(tmp_path / "run", model, tokenizer, training) == tmp_path / "run"

    loaded = load_checkpoint(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == FILES  # no .tmp left behind
    assert loaded.model.config == model.config
    assert loaded.training == training
    assert loaded.path == tmp_path / "run"
    assert not loaded.model.training
    assert loaded.model.lm_head.weight is loaded.model.transformer.wte.weight

    assert type(loaded.tokenizer) is type(tokenizer)
    ids = tokenizer.encode(TEXT)
    assert loaded.tokenizer.encode(TEXT) == ids
    assert loaded.tokenizer.decode(ids) == TEXT

    idx = torch.tensor([ids[:32], ids[-32:]])
    assert torch.equal(loaded.model(idx).logits, model(idx).logits)
    assert read_config(tmp_path / "run") == (model.config, training)


def test_loading_draws_no_random_weights(tmp_path):
    """The model is built unfilled and the file's tensors assigned: the global generator is
    untouched, and every parameter is the file's own tensor (biases included)."""
    model = random_model(shakespeare_bpe().vocab_size)
    save_checkpoint(tmp_path, model, shakespeare_bpe())
    state = torch.get_rng_state()
    loaded = load_checkpoint(tmp_path).model
    assert torch.equal(torch.get_rng_state(), state)
    for name, tensor in load_file(tmp_path / "model.safetensors").items():
        assert torch.equal(loaded.get_parameter(name), tensor), name


def test_tied_head_is_stored_once(tmp_path):
    model = random_model(shakespeare_bpe().vocab_size)
    save_checkpoint(tmp_path, model, shakespeare_bpe())
    with safe_open(tmp_path / "model.safetensors", framework="pt") as f:
        stored = set(f.keys())
    assert "lm_head.weight" not in stored
    assert stored == set(model.state_dict()) - {"lm_head.weight"}


def test_a_save_that_fails_leaves_the_old_checkpoint_whole_and_nothing_staged(tmp_path, monkeypatch):
    """lm.journal: every file is written before any is switched in."""
    old = make_checkpoint(tmp_path / "run", seed=1)
    before = {name: (old / name).read_bytes() for name in FILES}

    def full_disk(self, path):
        raise OSError("No space left on device")

    monkeypatch.setattr(type(shakespeare_bpe()), "save", full_disk)  # the second file of three
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(old, random_model(shakespeare_bpe().vocab_size, seed=2), shakespeare_bpe(), {"step": 2})
    assert {name: (old / name).read_bytes() for name in FILES} == before
    assert sorted(p.name for p in old.iterdir()) == FILES
    assert json.loads((old / "manifest.json").read_text())["state"] == "complete"


def test_the_manifest_names_the_step_and_every_file_by_size_and_hash(tmp_path):
    folder = save_checkpoint(tmp_path / "run", random_model(shakespeare_bpe().vocab_size), shakespeare_bpe(), {"step": 7})
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["step"], manifest["state"]) == (7, "complete")
    assert list(manifest["files"]) == ["model.safetensors", "tokenizer.json", "config.json"]  # the config last
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


# --- every way a folder can be wrong ------------------------------------------------


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)  # in place
    path.write_text(json.dumps(data), encoding="utf-8")


def edit_weights(folder: Path, change) -> None:
    weights = load_file(folder / "model.safetensors")
    change(weights)
    save_file(weights, folder / "model.safetensors")


def edit_model_config(**changes):
    return lambda f: edit_json(f / "config.json", lambda d: d["model"].update(changes))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


HF_CONFIG = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": 768, "n_head": 12, "n_layer": 12}

BROKEN = {
    # id: (how to break the folder made by make_checkpoint, what the message must say)
    "no-config-json": (lambda f: (f / "config.json").unlink(), "has no config.json"),
    "invalid-json": (lambda f: (f / "config.json").write_text('{"format": "llm-'), "config.json .* not valid JSON"),
    "not-utf8-json": (lambda f: (f / "config.json").write_bytes(b"\xff\xfe\x00{"), "not valid JSON"),
    "hugging-face-config": (
        lambda f: (f / "config.json").write_text(json.dumps(HF_CONFIG)),
        "not an LLM Explorer checkpoint",
    ),
    "json-array": (lambda f: (f / "config.json").write_text("[1, 2, 3]"), "not an LLM Explorer checkpoint"),
    "wrong-version": (lambda f: edit_json(f / "config.json", lambda d: d.update(version=7)), "version 7.*reads version 1"),
    "n_embd-not-divisible": (edit_model_config(n_head=3), r"bad model config.*n_embd \(32\).*n_head \(3\)"),
    "negative-size": (edit_model_config(n_layer=-2), "bad model config.*n_layer"),
    "unknown-model-field": (edit_model_config(n_ctx=1024), "bad model config.*n_ctx"),
    "no-model-config": (lambda f: edit_json(f / "config.json", lambda d: d.pop("model")), "bad model config"),
    "no-tokenizer-json": (lambda f: (f / "tokenizer.json").unlink(), "tokenizer.json"),
    "corrupt-tokenizer-json": (lambda f: (f / "tokenizer.json").write_text('{"merges": 3}'), "tokenizer.json"),
    "tokenizer-larger-than-vocab": (lambda f: make_checkpoint(f, vocab_size=300), "320 tokens but the model only 300"),
    "no-weights": (lambda f: (f / "model.safetensors").unlink(), "no model.safetensors"),
    "truncated-weights": (lambda f: truncate(f / "model.safetensors"), "model.safetensors .* truncated or corrupt"),
    "empty-weights": (lambda f: (f / "model.safetensors").write_bytes(b""), "truncated or corrupt"),
    "garbage-weights": (lambda f: (f / "model.safetensors").write_bytes(bytes(range(256)) * 40), "truncated or corrupt"),
    "wrong-shape": (
        lambda f: edit_weights(f, lambda w: w.update({"transformer.wpe.weight": torch.zeros(16, 32)})),
        r"transformer.wpe.weight has shape \(16, 32\), the config needs \(32, 32\)",
    ),
    "missing-tensor": (
        lambda f: edit_weights(f, lambda w: w.pop("transformer.h.1.mlp.c_fc.bias")),
        r"missing \['transformer.h.1.mlp.c_fc.bias'\], unexpected nothing",
    ),
    "unexpected-tensor": (
        lambda f: edit_weights(f, lambda w: w.update({"transformer.h.2.ln_1.weight": torch.ones(32)})),
        r"missing nothing, unexpected \['transformer.h.2.ln_1.weight'\]",
    ),
}


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_checkpoint(tmp_path / "ckpt")


@pytest.mark.parametrize("case", BROKEN)
def test_broken_folder_raises_a_clear_error(folder, case):
    load_checkpoint(folder)  # it was fine before
    breaker, message = BROKEN[case]
    breaker(folder)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="there is no folder .*nowhere"):
        load_checkpoint(tmp_path / "nowhere")


# --- loading never runs code from the file ------------------------------------------


class Touch:
    """Unpickling this creates `path`: proof that code in the file ran."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (self.path,)


def raw_pickle(obj) -> bytes:
    return pickle.dumps(obj)


def torch_save(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save({"transformer.wte.weight": obj}, buffer)
    return buffer.getvalue()


def unpickle(payload: bytes, writer):
    if writer is raw_pickle:
        return pickle.loads(payload)
    return torch.load(io.BytesIO(payload), weights_only=False)


@pytest.mark.parametrize("writer", [raw_pickle, torch_save])
def test_a_pickle_is_refused_without_running_it(folder, tmp_path, writer):
    probe = tmp_path / "probe"
    unpickle(writer(Touch(probe)), writer)
    assert probe.exists(), "the payload must really run when unpickled"

    marker = tmp_path / "marker"
    (folder / "model.safetensors").write_bytes(writer(Touch(marker)))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(folder)
    assert not marker.exists()
