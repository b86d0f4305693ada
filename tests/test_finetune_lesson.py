"""The fine-tuning lesson, step by step in one browser session: the first step sets up the
spam classifier on the demo model under this session's run name, and once that run exists the
later steps open its before/after comparison and its message box."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from explorer.lesson_steps import RUN_NAMES
from explorer.lessons import shipped_lessons
from tests.conftest import REPO
from tests.finetune_folders import copy_datasets, fake_finetune_run

KEY = "5-fine-tune-a-spam-filter"
LESSON = shipped_lessons()[f"{KEY}.toml"]


@pytest.fixture
def demo_model(app_dirs, monkeypatch):
    monkeypatch.setenv("LM_BUNDLED_MODELS", str(REPO / "models"))
    copy_datasets()
    return app_dirs


def go_to(at: AppTest, number: int) -> AppTest:
    """Follow the lesson's link to step `number`, in the same session (its run's name kept)."""
    step = LESSON.steps[number - 1]
    at.switch_page(step.info.path)
    at.query_params.clear()
    named = at.session_state[RUN_NAMES][KEY] if RUN_NAMES in at.session_state else None
    at.query_params.update(step.query_params(LESSON.presenter, {"run": named}))
    at.query_params.update({"lesson": KEY, "lesson_step": str(number)})
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_lesson_sets_up_the_run_then_opens_its_comparison_and_message_box(demo_model):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    go_to(at, 1)
    run = at.session_state[RUN_NAMES][KEY]
    assert run.startswith("spam-lesson-") and at.text_input(key="ft_name").value == run
    assert at.selectbox(key="ft_from").value == "shakespeare-demo" and at.radio(key="ft_method").value == "Classify"
    assert at.number_input(key="ft_max_steps").value == 50 and not at.button(key="ft_start").disabled

    fake_finetune_run(demo_model / "runs", run, "classify", checkpoint=True)  # as if Start had trained it
    go_to(at, 2)
    assert at.session_state["ft_tab"] == "⚖️ Before and after"
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "After: 94.0% right (+44.0 points)" in titles

    go_to(at, 3)
    assert at.session_state["ft_tab"] == "💬 Try a message"
    said = next(m.value for m in at.markdown if m.value.startswith("The model says"))
    assert said.split("**")[1] in ("ham", "spam")
