"""The person using a page and what they may do, from their Streamlit session: in classroom
mode a student works in a workspace of their own (runs, saved tokenizers, imports) and may
manage only what is in it; the teacher, like the single user of a local session, may do
everything, including reading paths on the server. explorer.identity holds the rules
without Streamlit; explorer.classroom draws the sign-in.

A student does not see classmates' runs, finished or not: each works at their own pace
without the class's experiments crowding their lists, the load test can check that nothing
leaks, and a run worth sharing is shared on purpose (Export, then Import) or shown by the
teacher, who sees every run."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from explorer.identity import LOCAL, VISITOR, ClassroomSettings, Person, load_settings
from explorer.paths import base_runs_root, check_name, runs_root, workspaces_root

SESSION_KEY = "classroom_person"
QUEUE_DIR = "_queue"  # in the base runs root: the training slots' lock files and the waiting line
SETTING_NAMES = ("LM_CLASSROOM", "LM_ACCESS_CODE", "LM_TEACHER_PASSWORD", "LM_CLASSROOM_SECRET", "LM_TRAINING_SLOTS",
                 "LM_ACTIVE_RUNS_PER_STUDENT", "LM_RUNS_PER_STUDENT")


def settings() -> ClassroomSettings | None:
    """Classroom mode's settings, None in a local session (ClassroomConfigError when half set up)."""
    return _settings(tuple(os.environ.get(name) for name in SETTING_NAMES))


@functools.lru_cache(maxsize=4)
def _settings(environment: tuple) -> ClassroomSettings | None:
    stored = st.secrets if st.secrets.load_if_toml_exists() else None
    return load_settings(dict(zip(SETTING_NAMES, environment)), stored)


def current_person() -> Person:
    """Who this page is for. Outside a page (a thread of the server's own, the command line,
    a test) there is no visitor: the machine's user."""
    if settings() is None or get_script_run_ctx(suppress_warning=True) is None:
        return LOCAL
    return st.session_state.get(SESSION_KEY, VISITOR)


def sign_in(person: Person) -> None:
    st.session_state[SESSION_KEY] = person


def sign_out() -> None:
    st.session_state.pop(SESSION_KEY, None)


def own_folder(person: Person | None = None) -> Path | None:
    """A student's workspace (None for those who work in the base runs root). A visitor's is a
    folder no student can own, where nothing is ever written (a visitor may start nothing)."""
    person = current_person() if person is None else person
    if person.manages_all:
        return None
    return workspaces_root() / (person.name if person.is_student else "_visitor")


def can_manage(info) -> bool:
    """Whether the person on this page may stop, delete, continue or overwrite the run `info`
    (a RunInfo): the teacher and a local user any run, a student only one inside their own workspace."""
    person = current_person()
    if person.manages_all:
        return True
    if not person.is_student:
        return False
    return Path(info.folder).resolve().parent == (own_folder(person) / "runs").resolve()


def can_read_server_paths() -> bool:
    """Opening a path typed on a page reads the server's disk: the teacher's or a local user's right only."""
    return current_person().manages_all


def training_limit_problem(runs: list) -> str | None:
    """Why the person on this page may not set one more run training now (their RunInfos
    given), or None: a new run and a continued one both count."""
    person, limits = current_person(), settings()
    if person.manages_all or limits is None:
        return None
    if not person.is_student:
        return "sign in first"
    active = sum(1 for info in runs if info.active)
    if active >= limits.active_runs_per_student:
        return (f"you have {active} run{'s' if active > 1 else ''} training or waiting already (this class allows "
                f"{limits.active_runs_per_student} at a time): let it finish or stop it first")
    return None


def run_limit_problem(runs: list) -> str | None:
    """Why the person on this page may not start another run now (their RunInfos given), or None."""
    problem = training_limit_problem(runs)
    limits = settings()
    if problem is None and limits is not None and not current_person().manages_all and len(runs) >= limits.runs_per_student:
        problem = f"your workspace holds {len(runs)} runs, this class's limit: delete one you no longer need first"
    return problem


def training_slots() -> int:
    """How many runs may train at once on this server (the rest wait in line): classroom mode's
    setting, else $LM_TRAINING_SLOTS; 0 is no limit (a local session, as before)."""
    limits = settings()
    if limits is not None:
        return limits.slots
    return max(0, int(os.environ.get("LM_TRAINING_SLOTS") or 0))


def queue_folder() -> Path:
    return base_runs_root() / QUEUE_DIR


def threads_per_run() -> int:
    """CPU threads for one training run when slots are shared: the cores but one (the server's)
    split between the slots, at least one each; 0 (PyTorch's choice) without slots."""
    slots = training_slots()
    return max(1, ((os.cpu_count() or 2) - 1) // slots) if slots else 0


def students() -> list[str]:
    """Every student's workspace name, for the teacher."""
    root = workspaces_root()
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")) if root.is_dir() else []


def run_roots() -> list[tuple[str, Path]]:
    """(name prefix, folder) for each runs folder the person on this page sees: their own, and
    for the teacher (or a local user) every student's too, their runs named 'student/run'."""
    own = runs_root()
    if not current_person().manages_all:
        return [("", own)]
    return [("", own), *((f"{name}/", workspaces_root() / name / "runs") for name in students())]


def locate_run(name: str) -> Path:
    """The folder of the run `name` as the person on this page names it (ValueError if it cannot be one)."""
    owner, slash, run = name.rpartition("/")
    if not slash:
        return runs_root() / check_name(name)
    if not current_person().manages_all:
        raise ValueError("a run of another workspace is not yours to open")
    return workspaces_root() / check_name(owner) / "runs" / check_name(run)


def run_name(folder: Path) -> str:
    """How the person on this page names the run in `folder` (the inverse of locate_run)."""
    runs = folder.parent
    if runs.name == "runs" and runs.parent.parent == workspaces_root() and current_person().manages_all:
        return f"{runs.parent.name}/{folder.name}"
    return folder.name


def runs_place() -> str:
    """Where the runs are, in words for a page: a path on the server only for those who may read it."""
    return f"`{runs_root()}/`" if current_person().manages_all else "your workspace"
