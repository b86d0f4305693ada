"""Following a lesson from page to page: every step's link says which lesson and step it is
(?lesson=KEY&lesson_step=N), and app.py draws a bar above that page with the lesson, the step
and Previous / Next, so a class never goes back to Home between steps. A lesson in presenter
view switches it on when a step opens (the sidebar switch keeps its own value otherwise).

A lesson that trains a run names it per browser session ("copy-lesson-3fa2"), so thirty
students on one server never collide and a lesson can be run again; the later steps open the
run this session made, and {induction_layer}/{induction_head} become its most induction-like
head as its last attention snapshot scored it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import streamlit as st

from explorer import presenter, runs
from explorer.lessons import Lesson, LessonError, Step, shipped_lessons
from lm.run_folder import DETECTORS_FILE, read_jsonl

LESSON, STEP = "lesson", "lesson_step"  # URL parameters of a step's link
RUN_NAMES = "lesson_run_names"  # session key: {lesson key: the run name this session trains}
ARRIVED = "lesson_arrived"  # session key: the (lesson, step) whose presenter setting was applied
UPLOADED = "lessons_uploaded"  # session key: lessons opened from a file, by key (explorer.lesson_widgets)
NAME_KEYS = ("train_name", "ft_name")  # the run-name inputs of the pages that start runs (Train, Fine-tune)


def session_run(lesson: Lesson, key: str) -> str:
    """The name of this session's run of the lesson: made once, with a random suffix."""
    names = st.session_state.setdefault(RUN_NAMES, {})
    if key not in names:
        names[key] = f"{lesson.run}-{secrets.token_hex(2)}"
    return names[key]


def run_exists(name: str) -> bool:
    try:
        return runs.run_folder(name).exists()
    except runs.RunError:
        return False


def best_induction_head(folder: Path) -> tuple[int, int] | None:
    """(layer, head) scoring highest on the induction probe at the run's last snapshot, past the
    first layer when there is more than one: an induction head reads what a head before it
    wrote (the previous token), so a first-layer head that scores is copying by position."""
    records = read_jsonl(folder / DETECTORS_FILE)
    scores = (records[-1].get("scores") or {}).get("induction") if records else None
    if not scores:
        return None
    first = 1 if len(scores) > 1 else 0
    best = max((value, layer, head) for layer, row in enumerate(scores) if layer >= first for head, value in enumerate(row))
    return best[1], best[2]


def fill_values(lesson: Lesson, key: str) -> dict[str, str]:
    """What the lesson's {placeholders} stand for in this session, as far as known yet."""
    if not lesson.run:
        return {}
    name = session_run(lesson, key)
    values = {"run": name}
    head = best_induction_head(runs.run_folder(name)) if run_exists(name) else None
    if head is not None:
        values |= {"induction_layer": str(head[0]), "induction_head": str(head[1])}
    return values


def step_link(lesson: Lesson, key: str, number: int) -> dict:
    """Query parameters that open step `number` (from 1) of the lesson set up, marked as that step."""
    params = lesson.steps[number - 1].query_params(lesson.presenter, fill_values(lesson, key))
    return params | {LESSON: key, STEP: str(number)}


def find_lesson(key: str) -> Lesson | None:
    if key in st.session_state.get(UPLOADED, {}):
        return st.session_state[UPLOADED][key]
    try:
        return shipped_lessons().get(f"{key}.toml") or shipped_lessons().get(f"{key}.json")
    except LessonError:
        return None


def current_step() -> tuple[str, Lesson, int] | None:
    """(key, lesson, step number) when this page was opened from a lesson's step."""
    key, number = st.query_params.get(LESSON), st.query_params.get(STEP, "")
    lesson = find_lesson(key) if key else None
    if lesson is None or not number.isdigit() or not 1 <= int(number) <= len(lesson.steps):
        return None
    return key, lesson, int(number)


def arrive() -> None:
    """Before the sidebar's presenter switch is drawn: a step of a presenter lesson, newly
    opened, switches presenter view on (the switch, drawn on every page, would otherwise keep
    the value it had on the page before)."""
    here = current_step()
    if here is None:
        return
    key, lesson, number = here
    if st.session_state.get(ARRIVED) != (key, number):
        st.session_state[ARRIVED] = (key, number)
        if lesson.presenter:
            st.session_state[presenter.PARAM] = True


def lesson_bar() -> None:
    """Above the page: the lesson, this step, and Previous / Next to the neighbouring steps."""
    here = current_step()
    if here is None:
        return
    key, lesson, number = here
    follow_the_run(lesson, key, number)
    style = shown_controls_css(lesson.steps[number - 1])
    if style and presenter.is_on():
        st.html(f"<style>{style}</style>")
    with st.container(key="lesson-bar"):  # one line: the page's own picture must still fit the first screen
        back, title, forward = st.columns([1, 6, 1], vertical_alignment="center")
        title.markdown(f"🎓 **{lesson.title}** · step {number} of {len(lesson.steps)}: {lesson.steps[number - 1].label}")
        for column, target, label in ((back, number - 1, "◀ Previous"), (forward, number + 1, "Next ▶")):
            if 1 <= target <= len(lesson.steps):
                step = lesson.steps[target - 1]
                column.page_link(step.info.path, label=label, query_params=step_link(lesson, key, target))
        offer_the_existing_run(lesson, key, number)


def shown_controls_css(step: Step) -> str:
    """Presenter view hides advanced controls; the ones a step sets are what it is about (top-p
    in the step on top-p), so they stay in sight unless the step hides them."""
    names = [name for name in step.params if name not in step.hide and presenter.NAME.fullmatch(name)]
    return " ".join(f".stApp .st-key-{presenter.ADVANCED_PREFIX}{name} {{ display: flex !important; }}" for name in names)


def follow_the_run(lesson: Lesson, key: str, number: int) -> None:
    """On the step that trains the lesson's run: a run the student started under another name
    (the Train page shows it as ?run=) becomes the one the later steps open. A step may name
    its run around {run} ("{run}-rope": a lesson's second run); the part {run} stands for is kept."""
    started = st.query_params.get("run")
    step = lesson.steps[number - 1]
    name_key = run_name_key(step)
    if not (lesson.run and name_key and started and run_exists(started)):
        return
    before, _, after = step.params[name_key].partition("{run}")
    base = started[len(before) : len(started) - len(after)]
    if started.startswith(before) and started.endswith(after) and base.startswith(lesson.run):
        st.session_state.setdefault(RUN_NAMES, {})[key] = base


def step_run(lesson: Lesson, key: str, step: Step, name_key: str) -> str:
    """The name of the run the step trains in this session ({run} filled in)."""
    return step.params[name_key].replace("{run}", session_run(lesson, key))


def run_name_key(step: Step) -> str | None:
    """The run-name input the step fills with the lesson's run, if the step starts it."""
    return next((name for name in NAME_KEYS if "{run}" in step.params.get(name, "")), None)


def offer_the_existing_run(lesson: Lesson, key: str, number: int) -> None:
    """Run again: this session's run exists already, so say so up front, with a way to open it
    and a fresh name to train a new one."""
    step = lesson.steps[number - 1]
    name_key = run_name_key(step)
    if not lesson.run or name_key is None:
        return
    name = step_run(lesson, key, step, name_key)
    if not run_exists(name):
        return
    opened, again = st.columns(2)
    opened.page_link(step.info.path, label=f"Open your run {name}", icon="📈", query_params={"run": name})
    if again.button("Train it again as a new run", key="lesson_new_run"):
        st.session_state[RUN_NAMES].pop(key, None)
        st.query_params.update(step_link(lesson, key, number))
        st.session_state[name_key] = step_run(lesson, key, step, name_key)
        st.rerun()
