"""Lessons: every shipped lesson loads, Home links each step to its page with its settings,
each step's page opens with them, a broken file is refused with a message that says what is
wrong, and a lesson saved from the pages reads back unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from streamlit.testing.v1 import AppTest

from explorer.lesson_widgets import DRAFT
from explorer.lessons import Lesson, LessonError, Step, dumps, parse_lesson, shipped_lessons
from explorer.models import find_models
from tests.conftest import REPO

LESSONS = shipped_lessons()
STEPS = [(name, number, step) for name, lesson in LESSONS.items() for number, step in enumerate(lesson.steps, 1)]


@pytest.fixture
def demo_model(app_dirs, monkeypatch):
    """The bundled Shakespeare model, which the lessons open."""
    monkeypatch.setenv("LM_BUNDLED_MODELS", str(REPO / "models"))
    return app_dirs


def test_the_shipped_lessons_load():
    titles = {lesson.title for lesson in LESSONS.values()}
    assert {"What is a token?", "Temperature and top-p", "Train Shakespeare",
            "Attention on a copy task"} <= titles
    for lesson in LESSONS.values():
        assert len(lesson.summary) > 150 and lesson.steps  # a real paragraph, at least one step


def run_in(template: str, filled: str) -> str:
    """What {run} stands for in a filled name ("{run}-rope" filled as "x-3fa2-rope": "x-3fa2")."""
    before, _, after = template.partition("{run}")
    return filled[len(before) : len(filled) - len(after)]


def test_home_links_every_step_to_its_page_with_its_settings(demo_model):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    links = {(link.proto.page, link.proto.label): parse_qs(link.proto.query_string)  # page: the URL path
             for link in at.get("page_link") if link.proto.query_string}
    for name, lesson in LESSONS.items():
        run_names = set()
        for number, step in enumerate(lesson.steps, 1):
            link = links[(Path(step.info.path).stem, f"{number}. {step.label}")]
            runs = [run_in(v, link[k][0]) for k, v in step.params.items() if isinstance(v, str) and "{run}" in v]
            run_names.update(runs)
            fill = {"run": runs[0]} if runs else {}
            expected = {k: v if isinstance(v, list) else [v] for k, v in step.query_params(lesson.presenter, fill).items()}
            expected |= {"lesson": [Path(name).stem], "lesson_step": [str(number)]}
            assert link == expected
        # one run name for the whole lesson, this session's own: the lesson's base and a suffix
        assert len(run_names) == (1 if lesson.run else 0)
        assert all(n.startswith(f"{lesson.run}-") and n != f"{lesson.run}-" for n in run_names)


def shown(value) -> str | list[str]:
    """A widget's value as a link writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [shown(v) for v in value]
    return str(value)


@pytest.mark.parametrize(("lesson", "number", "step"), STEPS, ids=[f"{name}-{n}" for name, n, _ in STEPS])
def test_each_step_opens_its_page_with_its_settings(demo_model, lesson, number, step):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page(step.info.path)
    for key, value in step.query_params().items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    models = {m.name for m in find_models()}
    for key, value in step.params.items():
        if "{" in str(value):
            continue  # filled in from the run this session trains (tests/test_lesson_steps.py)
        if step.params.get("run") == "{run}" and key not in at.session_state:
            continue  # a control of the run's own view, drawn once the lesson's run exists (tests/test_finetune_lesson.py)
        if key.endswith("_model") and value not in models:
            continue  # a model the lesson trains first: the page opens the demo meanwhile
        actual = at.session_state[key]
        if isinstance(actual, float):
            assert actual == pytest.approx(float(value)), key
        else:  # a detector's URL value is its label, the underscore a space (explorer.attention_tabs.detectors)
            assert (shown(actual).replace("_", " ") if key == "att_detector" else shown(actual)) == value, key


def test_a_lesson_reads_back_unchanged_after_saving():
    for lesson in LESSONS.values():
        assert parse_lesson(dumps(lesson).encode("utf-8"), "saved.json") == lesson


def test_the_sidebar_saves_the_current_page_as_a_step(demo_model):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("app_pages/generate.py")
    at.query_params.update({"gen_temperature": "1.5", "hide": "gen_top_k"})
    at.run()
    at.text_input(key="lesson_step_label").set_value("Hot")
    at.button(key="lesson_add").click().run()
    assert not at.exception, at.exception
    assert at.session_state[DRAFT] == [Step("Generate", "Hot", {"gen_temperature": "1.5"}, ("gen_top_k",))]
    at.text_input(key="lesson_title").set_value("Heat")
    at.text_area(key="lesson_summary").set_value("Temperature at work.").run()
    assert not at.get("download_button")[-1].proto.disabled
    lesson = Lesson("Heat", "Temperature at work.", tuple(at.session_state[DRAFT]))
    assert parse_lesson(dumps(lesson).encode(), "heat.json") == lesson


def test_the_teacher_picks_the_controls_a_step_hides(demo_model):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("app_pages/generate.py")
    at.run()
    picker = at.multiselect(key="lesson_hide")
    assert {"temperature", "top k", "top p", "max new", "seed"} <= set(picker.options)  # shown without the page prefix
    picker.set_value(["gen_top_p", "gen_seed"]).run()
    at.button(key="lesson_add").click().run()
    assert not at.exception, at.exception
    assert at.session_state[DRAFT][-1].hide == ("gen_top_p", "gen_seed")
    assert at.session_state[DRAFT][-1].query_params(False)["hide"] == "gen_top_p,gen_seed"


GOOD = {"title": "T", "summary": "S", "steps": [{"page": "Generate", "label": "L", "params": {"gen_top_k": 5}}]}


def with_changes(**changes) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def first_step(**changes) -> bytes:
    return with_changes(steps=[{**GOOD["steps"][0], **changes}])


@pytest.mark.parametrize(("data", "filename", "message"), [
    (b"title = ", "bad.toml", "not valid TOML"),
    (b"{", "bad.json", "not valid JSON"),
    (b"\xff\xfe junk", "bad.json", "not UTF-8"),
    (with_changes(), "lesson.py", ".toml or .json"),
    (b"x" * 70_000, "big.json", "at most"),
    (b"[1, 2]", "list.json", "a table of fields"),
    (with_changes(title=""), "t.json", "title must be a non-empty text"),
    (with_changes(steps=[]), "t.json", "at least one step"),
    (with_changes(run="rm -rf /"), "t.json", "run must be a run name"),
    (with_changes(minutes=0), "t.json", "minutes must be a whole number"),
    (with_changes(minutes="ten"), "t.json", "minutes must be a whole number"),
    (with_changes(extra=1), "t.json", "unknown field extra"),
    (with_changes(presenter="yes"), "t.json", "presenter must be true or false"),
    (first_step(page="Nowhere"), "t.json", "step 1: no page called 'Nowhere'"),
    (first_step(label=3), "t.json", "step 1: label must be a non-empty text"),
    (first_step(params={"gen top k": 5}), "t.json", "not a widget key"),
    (first_step(params={"gen_top_k": {"a": 1}}), "t.json", "gen_top_k must be a text, a number"),
    (first_step(hide=["x}body{display:none"]), "t.json", "hide must be a list of control names"),
])
def test_a_malformed_lesson_is_refused_with_a_clear_message(data, filename, message):
    with pytest.raises(LessonError, match=None) as error:
        parse_lesson(data, filename)
    assert message in str(error.value)


def test_params_are_written_as_a_link_writes_them():
    lesson = parse_lesson(b'''
title = "T"
summary = "S"
presenter = true
[[steps]]
page = "tokenizer"
label = "L"
hide = ["tok_show_ids"]
params = { tok_show_ids = true, bpe_vocab = 300, gen_top_p = 0.9, tok_chosen = ["GPT-2 (r50k_base)"] }
''', "t.toml")
    step = lesson.steps[0]
    assert step.page == "Tokenizer"  # page names are matched without case
    assert step.query_params(lesson.presenter) == {
        "tok_show_ids": "true", "bpe_vocab": "300", "gen_top_p": "0.9", "tok_chosen": ["GPT-2 (r50k_base)"],
        "hide": "tok_show_ids", "presenter": "true",
    }


def test_home_opens_an_uploaded_lesson_and_refuses_a_broken_one(demo_model):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.file_uploader(key="lesson_upload").set_value(("mine.json", with_changes(title="My lesson"), "application/json"))
    at.run()
    assert not at.exception, at.exception
    assert "### 🎓 My lesson" in [m.value.splitlines()[0] for m in at.markdown]
    at.file_uploader(key="lesson_upload").set_value(("broken.toml", b"title = ", "application/toml")).run()
    assert at.error[0].value.startswith("broken.toml cannot be opened as a lesson: not valid TOML")
