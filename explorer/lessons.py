"""Lessons: a teacher's walk through the pages, prepared once and opened from a link.

A lesson is a small TOML or JSON file: a title, what the class will see, and steps, each a
page with the URL parameters that set it up (the page's widget keys, see explorer.url_state)
and the controls to hide from the students:

    title = "Temperature and top-p"
    summary = "One paragraph: what the class will see."
    presenter = true                     # optional: open the steps in presenter view
    minutes = 5                          # optional: how long the lesson takes, shown on its card
    run = "copy-lesson"                  # optional: the run it trains, named per student ({run} below)
    [[steps]]
    page = "Generate"
    label = "Greedy: always the likeliest token"
    params = { gen_temperature = 0.0 }
    hide = ["gen_top_k"]                 # optional

A step's parameter may name the lesson's run as {run}: each browser session gets a run name of
its own (students on one server never collide), and the later steps open the run the student
made; {induction_layer} and {induction_head} are that run's head with the highest induction
score (explorer.lesson_widgets fills them in).

Reading one only parses data (tomllib, json): nothing in a file is ever run. The widgets that
show lessons and build new ones are in explorer.lesson_widgets.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from explorer import presenter
from explorer.navigation import PAGES, PageInfo

LESSONS_DIR = Path(__file__).resolve().parents[1] / "lessons"  # the lessons shipped with the app
MAX_LESSON_BYTES = 64 * 1024
MAX_STEPS = 20
KEY = re.compile(r"[A-Za-z0-9_-]+")
BY_TITLE = {page.title.lower(): page for page in PAGES}


class LessonError(ValueError):
    """A file that is not a valid lesson; the message says what is wrong and where."""


@dataclass(frozen=True)
class Step:
    page: str  # a page's title, as in the sidebar
    label: str
    params: dict[str, str | list[str]] = field(default_factory=dict)  # URL parameters, as text
    hide: tuple[str, ...] = ()

    @property
    def info(self) -> PageInfo:
        return BY_TITLE[self.page.lower()]

    def query_params(self, presenting: bool = False, fill: dict[str, str] | None = None) -> dict[str, str | list[str]]:
        """The step's link parameters: its own (each {name} in them replaced from `fill`, a
        parameter whose placeholder has no value left out), the controls to hide, and the
        presenter view if asked."""
        params = {}
        for key, value in self.params.items():
            filled = _fill(value, fill or {})
            if filled is not None:
                params[key] = filled
        if self.hide:
            params[presenter.HIDE] = ",".join(self.hide)
        if presenting:
            params[presenter.PARAM] = "true"
        return params


@dataclass(frozen=True)
class Lesson:
    title: str
    summary: str
    steps: tuple[Step, ...]
    presenter: bool = False
    minutes: int | None = None  # how long the whole lesson takes, the one duration it states
    run: str | None = None  # the base of the name of the run it trains, if it trains one



PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def _fill(value: str | list[str], fill: dict[str, str]) -> str | list[str] | None:
    """`value` with each {name} replaced from `fill`; None when a name has no value."""
    if isinstance(value, list):
        filled = [_fill(v, fill) for v in value]
        return None if None in filled else filled
    names = PLACEHOLDER.findall(value)
    if any(fill.get(name) is None for name in names):
        return None
    return PLACEHOLDER.sub(lambda m: str(fill[m.group(1)]), value)


def parse_lesson(data: bytes, filename: str) -> Lesson:
    """A lesson from a file's bytes; TOML or JSON by the file's extension."""
    if len(data) > MAX_LESSON_BYTES:
        raise LessonError(f"the file is {len(data):,} bytes; a lesson is at most {MAX_LESSON_BYTES:,}")
    suffix = Path(filename).suffix.lower()
    if suffix not in (".toml", ".json"):
        raise LessonError("a lesson is a .toml or .json file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LessonError(f"the file is not UTF-8 text (byte {exc.start})") from None
    try:
        raw = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LessonError(f"not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise LessonError(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:  # [[[[… thousands deep: the parsers recurse once a level
        raise LessonError("the file nests lists or tables thousands deep; a lesson is a few levels at most") from None
    return lesson_from_dict(raw)


def lesson_from_dict(raw) -> Lesson:
    """Check every field, saying which one is wrong."""
    if not isinstance(raw, dict):
        raise LessonError("a lesson is a table of fields (title, summary, steps)")
    unknown = set(raw) - {"title", "summary", "presenter", "minutes", "run", "steps"}
    if unknown:
        raise LessonError(f"unknown field {', '.join(sorted(unknown))}; a lesson has title, summary, presenter, steps")
    title, summary = _text(raw, "title"), _text(raw, "summary")
    presenting = raw.get("presenter", False)
    if not isinstance(presenting, bool):
        raise LessonError("presenter must be true or false")
    steps = raw.get("steps")
    if not isinstance(steps, list) or not steps:
        raise LessonError("steps must be a list of at least one step")
    if len(steps) > MAX_STEPS:
        raise LessonError(f"a lesson has at most {MAX_STEPS} steps")
    minutes = raw.get("minutes")
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int) or not 0 < minutes <= 600):
        raise LessonError("minutes must be a whole number of minutes, 1 to 600")
    run = raw.get("run")
    if run is not None and not (isinstance(run, str) and KEY.fullmatch(run)):
        raise LessonError("run must be a run name (letters, digits, _ and -)")
    return Lesson(title, summary, tuple(_step(s, number) for number, s in enumerate(steps, 1)), presenting, minutes, run)


def _text(raw: dict, name: str, where: str = "") -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value.strip():
        raise LessonError(f"{where}{name} must be a non-empty text")
    return value.strip()


def _step(raw, number: int) -> Step:
    where = f"step {number}: "
    if not isinstance(raw, dict):
        raise LessonError(f"{where}a step is a table with page, label, params and hide")
    unknown = set(raw) - {"page", "label", "params", "hide"}
    if unknown:
        raise LessonError(f"{where}unknown field {', '.join(sorted(unknown))}")
    page = _text(raw, "page", where)
    if page.lower() not in BY_TITLE:
        raise LessonError(f"{where}no page called {page!r}; the pages are {', '.join(p.title for p in PAGES)}")
    params = raw.get("params", {})
    if not isinstance(params, dict):
        raise LessonError(f"{where}params must be a table of widget keys and values")
    hide = raw.get("hide", [])
    if not isinstance(hide, list) or not all(isinstance(h, str) and KEY.fullmatch(h) for h in hide):
        raise LessonError(f"{where}hide must be a list of control names (letters, digits, _ and -)")
    return Step(BY_TITLE[page.lower()].title, _text(raw, "label", where),
                {key: _param(key, value, where) for key, value in params.items()}, tuple(hide))


def _param(key: str, value, where: str) -> str | list[str]:
    """A parameter as the URL writes it: true/false, numbers as digits, lists for multiselects."""
    if not KEY.fullmatch(key):
        raise LessonError(f"{where}{key!r} is not a widget key (letters, digits, _ and -)")
    if isinstance(value, list):
        return [_scalar(key, v, where) for v in value]
    return _scalar(key, value, where)


def _scalar(key: str, value, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise LessonError(f"{where}{key} must be a text, a number, true/false or a list of those")


def lesson_to_dict(lesson: Lesson) -> dict:
    steps = []
    for step in lesson.steps:
        entry = {"page": step.page, "label": step.label, "params": step.params}
        if step.hide:
            entry["hide"] = list(step.hide)
        steps.append(entry)
    extra = {k: v for k, v in (("minutes", lesson.minutes), ("run", lesson.run)) if v is not None}
    return {"title": lesson.title, "summary": lesson.summary, "presenter": lesson.presenter, **extra, "steps": steps}


def dumps(lesson: Lesson) -> str:
    """The lesson as a JSON file (parse_lesson reads it back unchanged)."""
    return json.dumps(lesson_to_dict(lesson), indent=2, ensure_ascii=False) + "\n"


def shipped_lessons(folder: Path = LESSONS_DIR) -> dict[str, Lesson]:
    """The lessons in the repository's lessons/ folder, by file name; a broken one raises."""
    files = sorted(p for p in folder.glob("*") if p.suffix in (".toml", ".json"))
    lessons = {}
    for path in files:
        try:
            lessons[path.name] = parse_lesson(path.read_bytes(), path.name)
        except LessonError as exc:
            raise LessonError(f"{path.name}: {exc}") from None
    return lessons
