"""Issue 13's hostile and careless inputs on the pages: text from outside (an address, a run's
records) is shown as the characters it is, never rendered as Markdown; a checkpoint with a
training record of the wrong type, NaN weights and a lesson nested thousands deep each get a
message instead of a raw exception."""

from __future__ import annotations

import json

import pytest
import torch
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from explorer.lessons import LessonError, parse_lesson
from explorer.plain_text import plain
from lm.checkpoint import save_checkpoint
from lm.generate import BrokenModelError, Sampling, generate
from tests.checkpoints import make_checkpoint, shakespeare_bpe, tiny_gpt
from tests.conftest import REPO, open_page

IMAGE = "![x](http://example.com/a.png)"
TRAIN, ATTENTION, GENERATE = "app_pages/train.py", "app_pages/attention.py", "app_pages/generate.py"


def rendered(markdown: str) -> str:
    """HTML as a CommonMark renderer (Streamlit's is one) makes it."""
    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


def shown_literally(body: str, text: str) -> bool:
    html = rendered(body)
    return "<img" not in html and "<a " not in html and "<strong" not in html and text in html


@pytest.mark.parametrize("text", [IMAGE, "[link](http://example.com)", "**bold** _x_ `c` :red[x] $x$", "# heading",
                                  "1. one", "2) two", "- item", "+ item", "> quote", "~~gone~~", "| a | b |",
                                  "<b>tag</b>", "a\\b", "_x_ and r50k_base"])
def test_plain_text_renders_as_the_characters_it_is(text):
    html = rendered(plain(text))
    assert html == f"<p>{text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}</p>\n"


def bodies(at: AppTest) -> list[str]:
    return [element.body for kind in (at.error, at.warning, at.info) for element in kind]


def test_a_run_named_in_the_address_is_shown_as_text(app_dirs):
    at = AppTest.from_file(str(REPO / TRAIN), default_timeout=120)
    at.query_params["run"] = IMAGE
    at.run()
    assert not at.exception, at.exception
    warnings = [body for body in bodies(at) if "is not a usable run name" in body]
    assert len(warnings) == 1 and shown_literally(warnings[0], IMAGE), bodies(at)


def test_a_runs_error_text_is_shown_as_text(app_dirs):
    folder = app_dirs / "runs" / "broken"
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(json.dumps({"state": "failed", "step": 3, "error": f"bad data {IMAGE}"}))
    at = AppTest.from_file(str(REPO / TRAIN), default_timeout=120)
    at.query_params["run"] = "broken"
    at.run()
    assert not at.exception, at.exception
    errors = [body for body in bodies(at) if body.startswith("The run failed")]
    assert len(errors) == 1 and shown_literally(errors[0], f"bad data {IMAGE}"), bodies(at)


@pytest.mark.parametrize("training", [["a", "list"], "a string", {"config": "not a table"}])
def test_a_training_record_of_the_wrong_type_is_a_message_on_the_attention_page(app_dirs, training):
    folder = make_checkpoint(app_dirs / "runs" / "odd")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "training": training}))
    at = open_page(ATTENTION)
    assert any("odd cannot be loaded" in body and "bad training record" in body for body in bodies(at)), bodies(at)


def nan_checkpoint(folder):
    tokenizer = shakespeare_bpe()
    model = tiny_gpt(tokenizer.vocab_size)
    with torch.no_grad():
        model.transformer.h[0].attn.c_attn.weight.fill_(float("nan"))  # a run whose loss blew up
    return save_checkpoint(folder, model, tokenizer)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_nan_weights_refuse_to_generate_with_a_message(tmp_path, temperature):
    tokenizer = shakespeare_bpe()
    model = tiny_gpt(tokenizer.vocab_size)
    with torch.no_grad():
        model.transformer.wte.weight[5].fill_(float("nan"))
    with pytest.raises(BrokenModelError, match="outputs are not numbers"):
        next(generate(model, tokenizer, [5], Sampling(temperature=temperature, seed=0)))


@pytest.mark.parametrize("stepwise", [False, True])
def test_nan_weights_then_generate_on_the_page_says_so(app_dirs, stepwise):
    nan_checkpoint(app_dirs / "runs" / "blown")
    at = AppTest.from_file(str(REPO / GENERATE), default_timeout=120)
    at.query_params["model"] = "blown"
    at.run()
    assert not at.exception, at.exception
    if stepwise:
        at.toggle(key="gen_stepwise").set_value(True).run()
    at.button(key="gen_next" if stepwise else "gen_button").click().run()
    assert not at.exception, at.exception
    assert any("outputs are not numbers" in body for body in bodies(at)), bodies(at)


@pytest.mark.parametrize("filename, data", [
    ("deep.json", b"[" * 30_000 + b"]" * 30_000),
    ("deep.json", b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
    ("deep.toml", b"a = " + b"[" * 30_000 + b"]" * 30_000),
])
def test_a_lesson_nested_thousands_deep_is_refused_with_a_message(filename, data):
    with pytest.raises(LessonError, match="nests lists or tables thousands deep"):
        parse_lesson(data, filename)
