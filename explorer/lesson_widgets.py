"""Lessons in the app: a card per lesson that opens each step's page set up, the Home page's
list of lessons with a file to open, and the sidebar's builder that collects pages into a
new lesson file. The file format is explorer.lessons."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from explorer import presenter
from explorer.lessons import BY_TITLE, MAX_LESSON_BYTES, Lesson, LessonError, Step, dumps, parse_lesson, shipped_lessons
from explorer.lesson_steps import UPLOADED, step_link
from explorer.plain_text import plain
from explorer.prepare import lesson_readiness
from explorer.url_state import page_params
from explorer.widgets import file_stem

DRAFT = "lesson_draft"  # session key: the steps collected so far by lesson_builder
HIDEABLE = "lesson_hideable"  # session key: {page title: the controls it has drawn in this session}


def lesson_card(lesson: Lesson, key: str) -> None:
    """Title, how long it takes and what the class will see (one element: every element is redrawn
    on each rerun of Home), and a link per step that opens its page set up."""
    with st.container(border=True):
        minutes = f":small[⏱ About {lesson.minutes} minutes on this machine]\n\n" if lesson.minutes else ""
        st.markdown(f"### 🎓 {lesson.title}\n\n{minutes}{lesson.summary}")
        lesson_readiness(lesson)
        for number, step in enumerate(lesson.steps, 1):
            st.page_link(step.info.path, label=f"{number}. {step.label}", icon=step.info.icon,
                         query_params=step_link(lesson, key, number))


def lessons_section() -> None:
    """The lessons shipped with the app, two to a row, and a lesson file of one's own to open."""
    try:
        lessons = [(Path(name).stem, lesson) for name, lesson in shipped_lessons().items()]
    except LessonError as exc:
        st.error(f"A lesson shipped with the app cannot be read: {exc}")
        lessons = []
    for row_start in range(0, len(lessons), 2):
        for column, (key, lesson) in zip(st.columns(2), lessons[row_start : row_start + 2]):
            with column:
                lesson_card(lesson, key)
    upload = st.file_uploader("Open a lesson file (.toml or .json)", type=["toml", "json"], key="lesson_upload")
    if upload is not None:
        try:
            if upload.size > MAX_LESSON_BYTES:  # the browser's limit is not enforced by the server
                raise LessonError(f"the file is {upload.size:,} bytes; a lesson is at most {MAX_LESSON_BYTES:,}")
            key = f"upload-{file_stem(Path(upload.name).stem)}"
            st.session_state.setdefault(UPLOADED, {})[key] = parse_lesson(upload.getvalue(), upload.name)
            lesson_card(st.session_state[UPLOADED][key], key)
        except LessonError as exc:
            st.error(plain(f"{upload.name} cannot be opened as a lesson: {exc}"))


def lesson_builder(page_title: str) -> None:
    """Sidebar: collect pages with their current settings as steps, then download the lesson."""
    steps: list[Step] = st.session_state.setdefault(DRAFT, [])
    with st.popover(f"🎓 Save as a lesson ({len(steps)} steps)" if steps else "🎓 Save as a lesson", width="stretch"):
        st.caption("Set a page up as the class should see it, add it as a step, go on to the next page. "
                   "Open the downloaded file on the Home page.")
        if page_title.lower() in BY_TITLE:
            st.text_input("This step's label", key="lesson_step_label", placeholder=page_title)
            choices = hideable(page_title)
            st.session_state["lesson_hide"] = [n for n in st.session_state.get("lesson_hide", presenter.hidden()) if n in choices]
            st.multiselect("Hide from the students", choices, key="lesson_hide", format_func=control_label,
                           help="These controls keep the values you set, but students following the lesson do not see them.")
            st.button(f"➕ Add the {page_title} page as step {len(steps) + 1}", key="lesson_add", on_click=_add_step,
                      args=(page_title,))
        else:
            st.caption("Steps are the other pages: open one to add it.")
        for number, step in enumerate(steps, 1):
            st.markdown(f"{number}. **{step.label}** ({step.page}, {len(step.params)} settings)")
        title = st.text_input("Lesson title", key="lesson_title", max_chars=120)
        summary = st.text_area("What the class will see", key="lesson_summary", max_chars=2000)
        ready = bool(steps and title.strip() and summary.strip())
        data = dumps(Lesson(title.strip(), summary.strip(), tuple(steps), presenter.is_on())) if ready else ""
        st.download_button("⬇ Download the lesson", data=data, file_name=f"{file_stem(title.lower()) if title.strip() else 'lesson'}.json",
                           mime="application/json", disabled=not ready, key="lesson_download", on_click="ignore")
        if not ready:
            st.caption("A lesson needs a title, a description and at least one step.")
        if steps:
            st.button("Start over", key="lesson_clear", on_click=steps.clear)


def _add_step(page_title: str) -> None:
    """The add button's callback (it runs before the page, so the count above is already right)."""
    params = page_params(page_title)
    params.pop(presenter.HIDE, None)
    params.pop(presenter.PARAM, None)
    label = st.session_state.get("lesson_step_label", "").strip() or page_title
    hide = tuple(st.session_state.get("lesson_hide", presenter.hidden()))
    st.session_state[DRAFT].append(Step(page_title, label, params, hide))


def hideable(page_title: str) -> list[str]:
    """The controls a step of this page can hide: those it drew in this run and before, so the
    controls of a form folded now (the Train page's) can still be chosen, and stay chosen."""
    seen = st.session_state.setdefault(HIDEABLE, {}).setdefault(page_title, [])
    seen += [name for name in presenter.drawn_controls() if name not in seen]
    return list(seen)


def control_label(name: str) -> str:
    """gen_top_k -> "top k": a control's key without its page prefix."""
    return name.split("_", 1)[-1].replace("_", " ")

