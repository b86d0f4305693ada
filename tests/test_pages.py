"""Every page, headless through Streamlit's AppTest: what it renders, and what it says to bad input."""

from __future__ import annotations

import json
import os

import pytest
import tiktoken
import torch
from streamlit.testing.v1 import AppTest

from explorer.tokenizers import JUST_TRAINED, TIKTOKEN_CHOICES, save_tokenizer, tokenizer_choices
from lm.device import use_threads_for_server
from lm.tokenizer import SPLIT_PATTERNS, BPETokenizer, TokenizerError
from tests.conftest import open_page


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def test_home_lists_pages_device_and_models(app_dirs):
    model = app_dirs / "runs" / "shakespeare-tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 2_000_000)
    (app_dirs / "runs" / "not-a-model").mkdir()

    at = open_page("app.py")  # Home is the default page
    assert at.title[0].value.endswith("LLM Explorer")
    card_titles = [m.value.splitlines()[0] for m in at.markdown if m.value.startswith("### ")]
    assert "### 🔤 Tokenizer" in card_titles
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Training would run on"] == "CPU"
    assert metrics["Models on disk"] == "1"
    assert at.dataframe[0].value["model"].tolist() == ["shakespeare-tiny"]


def test_tokenizer_page_counts_match_tiktoken(app_dirs):
    at = open_page("app_pages/tokenizer.py")
    text = at.text_area(key="tok_text").value
    for label, name in (("GPT-2 (r50k_base)", "r50k_base"), ("GPT-4 (cl100k_base)", "cl100k_base")):
        count = len(tiktoken.get_encoding(name).encode(text))
        assert any(m.startswith(f"**{label}** · {count} tokens") for m in texts(at.markdown))
    assert at.metric[0].value == f"{len(text):,}"
    assert at.metric[1].value == f"{len(text.encode()):,}"
    assert at.dataframe[0].value["tokens"].tolist() == [
        len(tiktoken.get_encoding(n).encode(text)) for n in ("r50k_base", "cl100k_base")
    ]


def test_empty_text_asks_for_text(app_dirs):
    at = open_page("app_pages/tokenizer.py")
    at.text_area(key="tok_text").set_value("").run()
    assert not at.exception
    assert any("Type or paste" in i.value for i in at.info)


def test_missing_tiktoken_files_give_a_message_not_a_traceback(app_dirs, monkeypatch):
    def offline(name):
        raise TokenizerError(f"{name} is not cached here; set TIKTOKEN_CACHE_DIR")

    monkeypatch.setattr("explorer.tokenizers.load_tiktoken", offline)
    at = open_page("app_pages/tokenizer.py")
    warnings = texts(at.warning)
    assert len(warnings) == 2 and all("TIKTOKEN_CACHE_DIR" in w for w in warnings)


def train(at: AppTest, vocab_size: int = 300) -> AppTest:
    at.number_input[0].set_value(vocab_size)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_train_on_shakespeare_then_compare_and_save(app_dirs):
    at = train(open_page("app_pages/tokenizer.py"))
    assert "Learned 43 merges from Tiny Shakespeare" in at.success[0].value
    assert "Own BPE (just trained)" in at.multiselect(key="tok_chosen").value
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert chart["data"][0]["x"][-1] == 43  # one point per merge, from 0
    at.slider(key="bpe_step").set_value(43).run()
    assert any(m.startswith("#### Merge 43:") for m in texts(at.markdown))

    at.text_input(key="bpe_search").set_value("th").run()
    vocab = at.dataframe[-1].value
    assert len(vocab) > 0 and vocab["token"].str.contains("th").all()

    at.text_input(key="bpe_name").set_value("../escape").run()
    at.button[1].click().run()
    assert "Not saved" in at.error[0].value
    at.text_input(key="bpe_name").set_value("shakespeare-300").run()
    at.button[1].click().run()
    saved = app_dirs / "tokenizers" / "shakespeare-300.json"
    assert saved.is_file() and "Saved as" in at.success[-1].value
    assert "Saved: shakespeare-300" in at.multiselect(key="tok_chosen").options


def test_pasted_text_too_short_for_the_vocabulary_warns(app_dirs):
    at = open_page("app_pages/tokenizer.py")
    at.radio(key="bpe_source").set_value("Paste text").run()
    assert at.button[0].disabled
    at.text_area(key="bpe_paste").set_value("abc abc abd").run()
    train(at, vocab_size=1000)
    assert any("ran out of pairs" in w for w in texts(at.warning))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"   \n ", "empty"),
        (b"text\x00with a NUL", "binary"),
    ],
)
def test_bad_uploads_are_refused_with_a_message(app_dirs, content, message):
    at = open_page("app_pages/tokenizer.py")
    at.radio(key="bpe_source").set_value("Upload a file").run()
    at.file_uploader(key="bpe_upload").set_value(("bad.txt", content, "text/plain")).run()
    assert not at.exception
    assert message in at.error[0].value
    assert at.button[0].disabled


def test_non_utf8_upload_lets_the_user_choose_an_encoding(app_dirs):
    at = open_page("app_pages/tokenizer.py")
    at.radio(key="bpe_source").set_value("Upload a file").run()
    latin = "Café crème, déjà vu. " * 50
    at.file_uploader(key="bpe_upload").set_value(("notes.txt", latin.encode("cp1252"), "text/plain")).run()
    assert "not UTF-8" in at.warning[0].value
    assert at.button[0].disabled
    at.selectbox(key="bpe_encoding").set_value("cp1252").run()
    train(at)
    assert "notes.txt (cp1252)" in at.success[0].value


def test_oversized_upload_is_refused_on_the_server(app_dirs, monkeypatch):
    monkeypatch.setattr("explorer.widgets.MAX_TEXT_BYTES", 1_000)
    at = open_page("app_pages/tokenizer.py")
    at.radio(key="bpe_source").set_value("Upload a file").run()
    at.file_uploader(key="bpe_upload").set_value(("big.txt", b"x" * 5_000, "text/plain")).run()
    assert "the limit is" in at.error[0].value
    assert at.button[0].disabled


@pytest.mark.parametrize(("cores", "threads"), [(8, 7), (2, 1), (1, 1), (None, 1)])
def test_the_server_leaves_a_core_free_for_itself_and_training_runs(monkeypatch, cores, threads):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert use_threads_for_server() == threads
    assert torch.get_num_threads() == threads


def test_tokenizer_choices_offer_openais_the_one_just_trained_and_the_saved_ones(app_dirs):
    trained = BPETokenizer.train("abc abc abd, abc abd! " * 20, 260, next(iter(SPLIT_PATTERNS)))
    saved = BPETokenizer.train("hello hello help " * 20, 260, next(iter(SPLIT_PATTERNS)))
    save_tokenizer(saved, "mine")
    choices = tokenizer_choices(trained)
    assert list(choices) == [*TIKTOKEN_CHOICES, JUST_TRAINED, "Saved: mine"]
    assert choices[JUST_TRAINED]() is trained
    assert choices["Saved: mine"]().encode("hello help") == saved.encode("hello help")
    assert list(tokenizer_choices()) == [*TIKTOKEN_CHOICES, "Saved: mine"]
