"""Importing GPT-2 (lm.gpt2): random GPT-2s built by transformers, saved in Hugging Face's
layout, must give the same logits, greedy text and attention in lm.GPT; foreign, truncated
or unsafe files and a missing network must get a clear message. Nothing here downloads:
the Hub is in offline mode with an empty cache for every test, and the download test
replaces hf_hub_download."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import load_file, save_file

from explorer.models import find_models
from lm.__main__ import main
from lm.attention import Probe
from lm.checkpoint import load_checkpoint
from lm.generate import Sampling, generate
from lm.gpt2 import SIZES, GPT2ImportError, import_gpt2, infer_config, load_gpt2
from lm.tokenizer import TiktokenTokenizer
from tests.conftest import open_page
from tests.test_attention_page import heatmap

transformers = pytest.importorskip("transformers")

VOCAB = 50_257
CONFIGS = {  # (n_layer, n_head, n_embd, n_positions): an odd number of heads, and an even one
    "3 heads": (2, 3, 48, 64),
    "4 heads": (3, 4, 64, 40),
}
PROMPT = "Hello, I'm a language model,"


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch, tmp_path):
    """The Hugging Face Hub offline, with an empty cache: a test that tried to download would fail, not fetch."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def hf_gpt2(folder: Path, n_layer: int, n_head: int, n_embd: int, n_positions: int, seed: int = 0):
    """A random transformers GPT-2 saved with save_pretrained (model.safetensors + config.json).
    Every weight, LayerNorms included, is perturbed, so a swapped or skipped tensor shows."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                                     n_head=n_head, attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(folder)
    return model


@pytest.fixture(scope="module", params=list(CONFIGS))
def saved(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf-gpt2")
    return hf_gpt2(folder, *CONFIGS[request.param]), folder


@pytest.fixture(scope="module")
def small_saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf-gpt2-odd")
    return hf_gpt2(folder, *CONFIGS["3 heads"]), folder


def test_logits_match_transformers(saved):
    hf, folder = saved
    ours = load_gpt2(folder)
    n_positions = hf.config.n_positions
    generator = torch.Generator().manual_seed(1)
    inputs = [
        torch.tensor([TiktokenTokenizer("r50k_base").encode(PROMPT)]),
        torch.randint(0, VOCAB, (2, 17), generator=generator),
        torch.randint(0, VOCAB, (1, n_positions), generator=generator),  # the whole context
        torch.tensor([[VOCAB - 1]]),  # <|endoftext|>, the last row
    ]
    with torch.no_grad():
        for ids in inputs:
            expected = hf(ids).logits
            np.testing.assert_allclose(ours(ids).logits, expected, atol=1e-4, rtol=0)
            np.testing.assert_allclose(ours(ids, probe=Probe(explain=True)).logits, expected, atol=1e-4, rtol=0)


def test_greedy_continuation_matches_transformers(saved):
    hf, folder = saved
    tokenizer = TiktokenTokenizer("r50k_base")
    prompt = tokenizer.encode(PROMPT)
    settings = Sampling(temperature=0.0, max_new_tokens=20, stop_at_end_of_text=False)
    ours = [step.token_id for step in generate(load_gpt2(folder), tokenizer, prompt, settings)]
    with torch.no_grad():
        theirs = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             do_sample=False, max_new_tokens=20, min_new_tokens=20, eos_token_id=None, pad_token_id=0)
    assert ours == theirs[0, len(prompt):].tolist()


def test_the_original_openai_layout_loads_the_same(small_saved, tmp_path):
    """openai-community/gpt2's own file: no 'transformer.' prefix, the causal mask saved as
    attn.bias / attn.masked_bias buffers, the tied head stored too."""
    hf, folder = small_saved
    weights = {k.removeprefix("transformer."): v for k, v in load_file(folder / "model.safetensors").items()}
    n_positions = hf.config.n_positions
    for layer in range(hf.config.n_layer):
        weights[f"h.{layer}.attn.bias"] = torch.ones(1, 1, n_positions, n_positions).tril()
        weights[f"h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    weights["lm_head.weight"] = weights["wte.weight"].clone()
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    ids = torch.randint(0, VOCAB, (1, 12))
    with torch.no_grad():
        np.testing.assert_allclose(load_gpt2(tmp_path / "model.safetensors")(ids).logits, hf(ids).logits, atol=1e-4)


def test_the_number_of_heads_comes_from_gpt2s_sizes_without_a_config():
    for name, spec in SIZES.items():
        shapes = {"wte.weight": (VOCAB, spec.n_embd), "wpe.weight": (1024, spec.n_embd)}
        shapes |= {f"h.{i}.ln_1.weight": (spec.n_embd,) for i in range(spec.n_layer)}
        assert infer_config(shapes, {}) == spec.config(), name


def mutate_file(folder: Path, out: Path, change) -> Path:
    """A copy of the saved model with its tensors (names without the prefix) changed by `change`."""
    out.mkdir(exist_ok=True)
    weights = {k.removeprefix("transformer."): v for k, v in load_file(folder / "model.safetensors").items()}
    change(weights)
    save_file(weights, out / "model.safetensors")
    shutil.copy(folder / "config.json", out / "config.json")
    return out


@pytest.mark.parametrize("change, message", [
    (lambda w: w.pop("h.1.mlp.c_proj.bias"), "missing h.1.mlp.c_proj.bias"),
    (lambda w: w.update({"h.0.mlp.c_fc.weight": w["h.0.mlp.c_fc.weight"].t().contiguous()}),
     "h.0.mlp.c_fc.weight has shape [192, 48]; a GPT-2 of this size needs [48, 192]"),
    (lambda w: w.update({"h.0.attn.q_proj.weight": torch.zeros(48, 48)}), "unexpected h.0.attn.q_proj.weight"),
    (lambda w: w.update({"lm_head.weight": torch.randn_like(w["wte.weight"])}), "not tied"),
    (lambda w: w.update({"h.3.ln_1.weight": torch.ones(48)}), "not numbered 0 to 2"),
])
def test_a_file_that_is_not_this_gpt2_names_the_tensor(small_saved, tmp_path, change, message):
    _, folder = small_saved
    with pytest.raises(GPT2ImportError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_gpt2(mutate_file(folder, tmp_path / "bad", change))


def test_foreign_truncated_and_pickled_files_are_refused(small_saved, tmp_path):
    _, folder = small_saved
    save_file({"bert.embeddings.word_embeddings.weight": torch.zeros(8, 4)}, tmp_path / "bert.safetensors")
    with pytest.raises(GPT2ImportError, match="not a GPT-2 file: it has no 2-D wte.weight"):
        load_gpt2(tmp_path / "bert.safetensors")

    data = (folder / "model.safetensors").read_bytes()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(GPT2ImportError, match="truncated, corrupt"):
        load_gpt2(tmp_path / "cut")

    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(GPT2ImportError, match="holds pytorch_model.bin: a pickle"):
        load_gpt2(tmp_path / "pickled")
    with pytest.raises(GPT2ImportError, match="is a pickle"):
        load_gpt2(tmp_path / "pickled" / "pytorch_model.bin")
    with pytest.raises(GPT2ImportError, match="there is no file or folder"):
        load_gpt2(tmp_path / "nowhere")


def test_a_config_lm_cannot_follow_is_refused(small_saved, tmp_path):
    _, folder = small_saved
    out = mutate_file(folder, tmp_path / "eps", lambda w: None)
    config = json.loads((out / "config.json").read_text())
    for change, message in [
        ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon = 1e-06 cannot be imported"),
        ({"model_type": "bert"}, "describes a 'bert' model"),
        ({"n_embd": 768}, "n_embd = 768 but the weights have 48"),
    ]:
        (out / "config.json").write_text(json.dumps(config | change))
        with pytest.raises(GPT2ImportError, match=message):
            load_gpt2(out)
    (out / "config.json").unlink()  # without it, a shape none of GPT-2's sizes has leaves the heads unknown
    with pytest.raises(GPT2ImportError, match="put the model's Hugging Face config.json beside"):
        load_gpt2(out)


def test_a_smaller_vocabulary_is_not_gpt2s_tokenizer(tmp_path):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=1000, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    with pytest.raises(GPT2ImportError, match="1,000 rows; GPT-2's tokenizer needs 50,257"):
        load_gpt2(tmp_path)


def test_offline_download_says_how_to_provide_the_file(tmp_path):
    out = tmp_path / "gpt2"
    with pytest.raises(GPT2ImportError) as error:
        import_gpt2("small", out=out)
    message = str(error.value)
    assert "https://huggingface.co/openai-community/gpt2" in message and "--from" in message
    assert not out.exists()
    assert main(["import-gpt2", "--size", "medium", "--out", str(out)]) == 1


def test_a_size_that_cannot_fit_is_refused_before_downloading(monkeypatch, tmp_path):
    monkeypatch.setattr("lm.gpt2.physical_memory_bytes", lambda: 4 * 2**30)
    with pytest.raises(GPT2ImportError, match=r"needs about [\d.]+ GiB of memory to run, but this machine has 4\.0"):
        import_gpt2("xl", out=tmp_path / "xl")
    assert not (tmp_path / "xl").exists()


def test_download_reports_progress_and_records_where_the_weights_came_from(small_saved, tmp_path, monkeypatch):
    """hf_hub_download replaced by one that 'downloads' the saved model in two chunks,
    moving the progress bar class it is given, as huggingface_hub does."""
    hf, folder = small_saved
    asked = []

    def fake_download(repo_id, filename, tqdm_class=None, **kwargs):
        asked.append((repo_id, filename))
        path = folder / filename
        size = path.stat().st_size
        bar = tqdm_class(total=size, initial=0, desc=filename, unit="B")
        bar.update(size // 2)
        bar.update(size - size // 2)
        bar.close()
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    reports = []
    out = import_gpt2("medium", out=tmp_path / "gpt2", progress=lambda done, total: reports.append((done, total)))
    repo = "openai-community/gpt2-medium"
    assert asked == [(repo, "config.json"), (repo, "model.safetensors")]
    size = (folder / "model.safetensors").stat().st_size
    assert reports[-2:] == [(size // 2, size), (size, size)]
    checkpoint = load_checkpoint(out)
    assert checkpoint.training["hugging_face_repo"] == "openai-community/gpt2-medium"
    ids = torch.randint(0, VOCAB, (1, 9))
    with torch.no_grad():
        np.testing.assert_allclose(checkpoint.model(ids).logits, hf(ids).logits, atol=1e-4)


def test_cli_writes_a_checkpoint_every_page_loads(small_saved, tmp_path, monkeypatch, capsys):
    hf, folder = small_saved
    monkeypatch.setenv("LM_RUNS_DIR", str(tmp_path / "runs"))
    assert main(["import-gpt2", "--from", str(folder)]) == 0
    out = tmp_path / "runs" / "gpt2-custom"  # a GPT-2 of none of OpenAI's sizes
    assert str(out) in capsys.readouterr().out
    checkpoint = load_checkpoint(out)
    assert checkpoint.tokenizer.name == "GPT-2" and json.loads((out / "tokenizer.json").read_text()) == {
        "tiktoken": "r50k_base"}
    assert checkpoint.model.config.n_head == 3 and checkpoint.model.config.vocab_size == VOCAB
    assert [m.name for m in find_models(tmp_path / "runs")] == ["gpt2-custom"]
    ids = torch.randint(0, VOCAB, (2, 11))
    with torch.no_grad():
        np.testing.assert_allclose(checkpoint.model(ids).logits, hf(ids).logits, atol=1e-4)

    before = (out / "model.safetensors").stat().st_mtime_ns
    assert main(["import-gpt2", "--from", str(folder)]) == 1  # never overwrites a model
    assert "already holds a model" in capsys.readouterr().err
    assert (out / "model.safetensors").stat().st_mtime_ns == before


def test_home_page_imports_a_local_file_and_links_to_it(small_saved, app_dirs):
    _, folder = small_saved
    at = open_page("app.py")  # Home is the default page; its links need the navigation
    at.radio(key="gpt2_source").set_value("A file or folder on this machine").run()
    assert at.button(key="gpt2_import").disabled  # no path yet
    at.text_input(key="gpt2_path").set_value(str(folder / "model.safetensors")).run()
    at.button(key="gpt2_import").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert "**gpt2-custom** is on disk:" in [m.value for m in at.markdown]
    assert [m.name for m in find_models(app_dirs / "runs")] == ["gpt2-custom"]
    assert load_checkpoint(app_dirs / "runs" / "gpt2-custom").training["file"] == str(folder / "model.safetensors")

    at.text_input(key="gpt2_path").set_value(str(app_dirs / "missing")).run()
    at.button(key="gpt2_import").click().run()
    assert not at.exception, at.exception
    assert any("there is no file or folder" in e.value for e in at.error)


def test_imported_gpt2_attention_on_the_attention_page_is_transformers(small_saved, app_dirs):
    """The Attention page shows the imported model's heads, equal to transformers' own attention."""
    hf, folder = small_saved
    import_gpt2(source=folder, out=app_dirs / "runs" / "gpt2-tiny")
    at = open_page("app_pages/attention.py")
    at.selectbox(key="att_model").set_value("gpt2-tiny").run()
    text = "To be, or not to be: that is the question."
    at.text_area(key="att_text").set_value(text).run()
    at.segmented_control(key="att_layer").set_value(1).run()
    at.segmented_control(key="att_head").set_value(2).run()
    assert not at.exception, at.exception
    ids = torch.tensor([TiktokenTokenizer("r50k_base").encode(text)])
    with torch.no_grad():
        expected = hf(ids, output_attentions=True).attentions[1][0, 2].numpy()
    np.testing.assert_allclose(heatmap(at), expected, atol=1e-5)
