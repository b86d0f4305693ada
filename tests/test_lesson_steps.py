"""Following a lesson across pages: the bar with Previous / Next on the step's own page, a
presenter lesson switching presenter view on from any step, a run name of each session's own
that the later steps follow, and the run's induction head found from its snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.lesson_steps import RUN_NAMES, best_induction_head, shown_controls_css
from explorer.lessons import Step, shipped_lessons
from explorer.paths import runs_root
from tests.conftest import REPO

LESSONS = {Path(name).stem: lesson for name, lesson in shipped_lessons().items()}


def open_step(key: str, number: int, session: dict | None = None, extra: dict | None = None) -> AppTest:
    """The app on a lesson's step as its link opens it (the lesson's run not trained yet unless made)."""
    lesson = LESSONS[key]
    step = lesson.steps[number - 1]
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    for name, value in (session or {}).items():
        at.session_state[name] = value
    at.run()
    at.switch_page(step.info.path)
    fill = {"run": at.session_state[RUN_NAMES][key]} if lesson.run and RUN_NAMES in at.session_state else {}
    for name, value in (step.query_params(lesson.presenter, fill) | (extra or {})).items():
        at.query_params[name] = value
    at.query_params["lesson"], at.query_params["lesson_step"] = key, str(number)
    at.run()
    assert not at.exception, at.exception
    return at


def links(at: AppTest) -> dict[str, dict]:
    return {link.proto.label: dict(p.split("=", 1) for p in link.proto.query_string.split("&") if p)
            for link in at.get("page_link")}


def test_the_bar_links_the_neighbouring_steps(app_dirs):
    at = open_step("3-temperature-and-top-p", 2)
    found = links(at)
    assert found["◀ Previous"]["lesson_step"] == "1" and found["Next ▶"]["lesson_step"] == "3"
    assert found["Next ▶"]["gen_top_p"] == "0.9" and found["Next ▶"]["lesson"] == "3-temperature-and-top-p"
    assert any("step 2 of 3" in md.value for md in at.markdown)
    first = links(open_step("3-temperature-and-top-p", 1))
    assert "◀ Previous" not in first and "Next ▶" in first


def test_a_presenter_lesson_turns_presenter_view_on_even_when_it_was_off(app_dirs):
    at = open_step("3-temperature-and-top-p", 3, session={"presenter": False})
    assert at.session_state["presenter"] is True
    assert "gen_top_p" not in at.query_params.get("hide", "")  # the step about top-p shows its slider


def test_the_controls_a_step_sets_stay_in_sight_in_presenter_view():
    top_p = LESSONS["3-temperature-and-top-p"].steps[2]
    css = shown_controls_css(top_p)
    assert ".st-key-advanced-gen_top_p" in css and "gen_top_k" not in css and "gen_seed" not in css  # hidden ones stay hidden


def test_a_lesson_without_presenter_leaves_the_switch_alone(app_dirs):
    at = open_step("1-what-is-a-token", 1, session={"presenter": False})
    assert at.session_state["presenter"] is False


def test_each_session_names_its_own_run_and_later_steps_follow_it(app_dirs):
    first = open_step("4-attention-on-a-copy-task", 1)
    second = open_step("4-attention-on-a-copy-task", 1)
    mine, theirs = first.session_state[RUN_NAMES]["4-attention-on-a-copy-task"], second.session_state[RUN_NAMES]["4-attention-on-a-copy-task"]
    assert mine != theirs and mine.startswith("copy-lesson-")
    assert first.text_input(key="train_name").value == mine
    assert links(first)["Next ▶"]["att_model"] == mine


def test_a_run_already_made_is_offered_up_front_and_its_induction_head_opened(app_dirs):
    name = "copy-lesson-beef"
    folder = runs_root() / name
    folder.mkdir(parents=True)
    scores = {"induction": [[0.1, 0.2], [0.05, 0.81]], "previous_token": [[0.9, 0.1], [0.1, 0.1]]}
    (folder / "detectors.jsonl").write_text(json.dumps({"step": 10, "scores": scores}) + "\n")
    at = open_step("4-attention-on-a-copy-task", 1, session={RUN_NAMES: {"4-attention-on-a-copy-task": name}})
    found = links(at)
    assert found[f"Open your run {name}"] == {"run": name}
    assert found["Next ▶"]["att_model"] == name
    nxt = links(open_step("4-attention-on-a-copy-task", 2, session={RUN_NAMES: {"4-attention-on-a-copy-task": name}}))
    assert (nxt["Next ▶"]["att_layer"], nxt["Next ▶"]["att_head"]) == ("1", "1")


def test_best_induction_head_reads_the_last_snapshot(tmp_path):
    records = [{"step": 0, "scores": {"induction": [[0.9, 0.0]]}}, {"step": 5, "scores": {"induction": [[0.1, 0.3]]}}]
    (tmp_path / "detectors.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert best_induction_head(tmp_path) == (0, 1)  # one layer: its best head
    two_layers = {"step": 9, "scores": {"induction": [[0.9, 0.5], [0.2, 0.3]]}}
    (tmp_path / "detectors.jsonl").write_text(json.dumps(two_layers) + "\n")
    assert best_induction_head(tmp_path) == (1, 1)  # layer 0's 0.9 is copying by position
    assert best_induction_head(tmp_path / "missing") is None


def test_placeholders_without_a_value_leave_their_parameter_out():
    step = Step("Attention", "x", {"att_model": "{run}", "att_layer": "{induction_layer}", "att_text": "abc"})
    assert step.query_params(fill={"run": "r-1"}) == {"att_model": "r-1", "att_text": "abc"}
    assert step.query_params(fill={"run": "r-1", "induction_layer": "1"})["att_layer"] == "1"
    assert step.query_params() == {"att_text": "abc"}


@pytest.mark.parametrize("key", sorted(LESSONS))
def test_every_step_of_every_lesson_opens_with_its_bar(app_dirs, key):
    for number in range(1, len(LESSONS[key].steps) + 1):
        at = open_step(key, number)
        assert any(f"step {number} of {len(LESSONS[key].steps)}" in md.value for md in at.markdown)
