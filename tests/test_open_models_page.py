"""Small open-weight models in the app: the Home page imports a random Llama-shaped model that
transformers saved (from its folder, or "downloaded" by a fake Hub), says clearly why it
cannot (offline, not a model folder, an architecture it does not know, too big), and the
imported model opens on the Attention, Generate and Inside the model pages, its tokenizer on
the Tokenizer page with its special tokens and chat template. Nothing here downloads."""

from __future__ import annotations

import json
import shutil

import huggingface_hub
import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from explorer.gpt2_import_form import FROM_HUB
from explorer.hf_import_form import FROM_FOLDER
from explorer.hf_import_jobs import reporting_downloader
from lm.checkpoint import load_checkpoint
from lm.hf_import import IMPORTED, import_hf
from tests.conftest import open_page
from tests.test_attention_page import heatmap
from tests.test_generate_page import generate_on_page, shown_ids
from tests.test_hf_import import hub_offline, save_random, tokenizer_file  # noqa: F401  (fixtures)
from tests.test_inside_page import as_array, charts, logits, open_inside

TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|endoftext|>\n{% endfor %}"


@pytest.fixture(scope="module")
def llama(tmp_path_factory, tokenizer_file):  # noqa: F811
    """A tiny random Llama (GQA 6:2) saved by transformers, its tokenizer and chat template beside it."""
    folder = tmp_path_factory.mktemp("hf") / "tiny-llama"
    hf = save_random(folder, "llama GQA untied", tokenizer_file)
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    return hf, folder


def home_with(source: str):
    at = open_page("app.py")  # Home is the default page; its links need the navigation
    at.radio(key="hf_source").set_value(source).run()
    return at


def import_folder(at, path) -> None:
    at.text_input(key="hf_path").set_value(str(path)).run()
    at.button(key="hf_import").click().run()
    assert not at.exception, at.exception


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def test_home_imports_a_model_folder_and_links_to_it(llama, app_dirs):
    at = home_with(FROM_FOLDER)
    assert at.button(key="hf_import").disabled  # no path yet
    import_folder(at, llama[1])
    assert not errors(at), errors(at)
    assert "**tiny-llama** is on disk:" in [m.value for m in at.markdown]
    checkpoint = load_checkpoint(app_dirs / "runs" / "tiny-llama")
    assert checkpoint.training["source"] == IMPORTED and checkpoint.model.config.kv_heads == 2


def unknown_architecture(path, model):
    shutil.copytree(model, path)
    (path / "config.json").write_text(json.dumps({**json.loads((model / "config.json").read_text()), "model_type": "bloom"}))


@pytest.mark.parametrize("make, message", [
    (lambda path, model: None, "there is no folder"),
    (lambda path, model: path.mkdir(), "has no readable Hugging Face config.json"),
    (unknown_architecture, "describes a 'bloom' model"),
])
def test_a_folder_that_cannot_be_imported_says_why(llama, app_dirs, make, message):
    make(app_dirs / "folder", llama[1])
    at = home_with(FROM_FOLDER)
    import_folder(at, app_dirs / "folder")
    assert any(message in e for e in errors(at)), errors(at)
    assert not (app_dirs / "runs" / "folder").exists()


def test_a_known_model_is_downloaded_with_its_progress(llama, app_dirs, monkeypatch):
    asked = []

    def fake_snapshot_download(repo_id, revision, allow_patterns, tqdm_class):
        asked.append((repo_id, allow_patterns))
        if allow_patterns == ["*.safetensors"]:
            bar = tqdm_class(total=1000, unit="B")
            bar.update(400), bar.update(600)
        return str(llama[1])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    reports = []
    reporting_downloader(lambda done, total: reports.append((done, total)))("o/m", None, ["config.json", "*.safetensors"])
    assert reports == [(400, 1000), (1000, 1000)] and asked == [("o/m", ["config.json"]), ("o/m", ["*.safetensors"])]

    at = home_with(FROM_HUB)
    assert at.selectbox(key="hf_model").value == "smollm2-135m"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == "135 M" and metrics["Download"] == "≈ 0.27 GB"
    at.button(key="hf_import").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert "**SmolLM2-135M** is on disk:" in [m.value for m in at.markdown]
    assert load_checkpoint(app_dirs / "runs" / "SmolLM2-135M").training["hugging_face_repo"] == "HuggingFaceTB/SmolLM2-135M"


def test_offline_the_download_fails_clearly(app_dirs):
    at = home_with(FROM_HUB)
    at.button(key="hf_import").click().run()  # the real downloader, offline with an empty cache (hub_offline)
    assert any("no network, or offline mode" in e and "import that folder" in e for e in errors(at)), errors(at)
    assert not (app_dirs / "runs" / "SmolLM2-135M").exists()


def test_a_model_too_big_for_memory_is_refused_before_download(app_dirs, monkeypatch):
    monkeypatch.setattr("lm.sizing.physical_memory_bytes", lambda: 2**30)
    at = home_with(FROM_HUB)
    at.selectbox(key="hf_model").set_value("qwen3-0.6b").run()
    assert any("Too big for this machine" in w.value and "GiB to run" in w.value for w in at.warning)
    assert at.button(key="hf_import").disabled


def test_a_student_sees_no_controls(app_dirs, monkeypatch):
    monkeypatch.setattr("explorer.gpt2_import_form.can_read_server_paths", lambda: False)  # import_section decides
    at = open_page("app.py")
    assert any("Your teacher imports open-weight models" in i.value for i in at.info)
    assert not any(w.key and w.key.startswith("hf_") for w in [*at.radio, *at.button, *at.text_input])


@pytest.fixture
def imported(llama, app_dirs):
    hf, folder = llama
    return hf, import_hf(str(folder), app_dirs / "runs" / "tiny-llama")


def test_the_attention_page_shows_the_imported_models_heads(imported):
    hf, folder = imported
    at = open_page("app_pages/attention.py")
    text = "To be, or not to be"
    at.text_area(key="att_text").set_value(text).run()
    at.segmented_control(key="att_layer").set_value(1).run()
    at.segmented_control(key="att_head").set_value(4).run()
    assert not at.exception, at.exception
    ids = torch.tensor([load_checkpoint(folder).tokenizer.encode(text)])
    with torch.no_grad():
        expected = hf(ids, output_attentions=True).attentions[1][0, 4].numpy()
    np.testing.assert_allclose(heatmap(at), expected, atol=1e-5)


def test_generate_and_inside_open_the_imported_model(imported):
    _, folder = imported
    at = generate_on_page(open_page("app_pages/generate.py"))
    assert shown_ids(at) and max(shown_ids(at)) < load_checkpoint(folder).model.config.vocab_size

    at = open_inside()
    text = at.text_area(key="ins_text").value
    probs = torch.softmax(logits(folder, text), -1)
    np.testing.assert_allclose(as_array(charts(at)[0]["data"][0]["z"])[-1], probs.max(-1).values.numpy(), rtol=1e-4)


def test_the_tokenizer_page_lists_its_tokenizer_with_special_tokens_and_template(imported, tokenizer_file):  # noqa: F811
    at = open_page("app_pages/tokenizer.py")
    label = "Model: tiny-llama"
    at.multiselect(key="tok_chosen").set_value(["GPT-2 (r50k_base)", label]).run()
    assert not at.exception, at.exception
    text = at.text_area(key="tok_text").value
    count = len(Tokenizer.from_file(str(tokenizer_file)).encode(text, add_special_tokens=False).ids)
    assert any(m.value.startswith(f"**{label}** · {count:,} tokens") for m in at.markdown)
    assert at.expander[0].label == "1 special token and a chat template"
    assert at.dataframe[0].value.to_dict("records") == [{"token": "<|endoftext|>", "id": 0}]
    assert at.code[0].value == TEMPLATE
