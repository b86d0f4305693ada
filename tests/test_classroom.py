"""Classroom mode: sign-in, workspaces kept apart, who may stop and delete which run, server
paths kept from students, and the line for training slots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from streamlit.testing.v1 import AppTest

from explorer import identity, runs, workspace
from explorer.identity import TEACHER, ClassroomConfigError, Person, SignInError
from explorer.models import find_models
from explorer.paths import tokenizers_dir, workspaces_root
from lm import slots
from lm.run_folder import LAUNCH_FILE, STATUS_FILE
from tests.conftest import REPO
from tests.helpers import wait_for

CODE, PASSWORD = "owl-42", "hedgehog-teacher"
ADA, BOB = Person("student", "ada"), Person("student", "bob")


@pytest.fixture
def classroom(app_dirs, monkeypatch):
    for name, value in (("LM_CLASSROOM", "1"), ("LM_ACCESS_CODE", CODE), ("LM_TEACHER_PASSWORD", PASSWORD)):
        monkeypatch.setenv(name, value)
    return app_dirs


@pytest.fixture
def as_person(classroom, monkeypatch):
    """Switch who the pages think is signed in (outside a page there is no session)."""

    def switch(person: Person) -> None:
        monkeypatch.setattr(workspace, "current_person", lambda: person)

    return switch


def settings() -> identity.ClassroomSettings:
    return workspace.settings()


def finished_run(folder: Path, pid: int | None = None, started: float | None = None) -> Path:
    """A run folder as the run manager finds it: finished, or running as the process `pid`."""
    folder.mkdir(parents=True)
    state = {"state": "running" if pid else "finished", "step": 3, "max_steps": 10}
    (folder / STATUS_FILE).write_text(json.dumps({**state, "pid": pid, "started": started}))
    (folder / LAUNCH_FILE).write_text(json.dumps({"pid": pid, "started": started}))
    return folder


# --- settings and sign-in ---------------------------------------------------------------


def test_without_classroom_mode_everyone_is_the_local_user(app_dirs):
    assert identity.load_settings({}) is None
    assert workspace.current_person() == identity.LOCAL and workspace.can_read_server_paths()


@pytest.mark.parametrize("environ, message", [
    ({"LM_CLASSROOM": "1", "LM_ACCESS_CODE": "x"}, "needs an access code"),
    ({"LM_CLASSROOM": "1", "LM_ACCESS_CODE": "same", "LM_TEACHER_PASSWORD": "same"}, "must differ"),
    ({"LM_CLASSROOM": "1", "LM_ACCESS_CODE": "a", "LM_TEACHER_PASSWORD": "b", "LM_TRAINING_SLOTS": "0"}, "at least 1"),
])
def test_classroom_mode_refuses_to_start_half_set_up(environ, message):
    with pytest.raises(ClassroomConfigError, match=message):
        identity.load_settings(environ)


def test_settings_come_from_the_secrets_file_too():
    loaded = identity.load_settings({}, {"classroom": True, "access_code": "a", "teacher_password": "b",
                                         "training_slots": 3})
    assert (loaded.access_code, loaded.teacher_password, loaded.slots) == ("a", "b", 3)


def test_a_name_is_claimed_by_its_secret_word(classroom):
    root = workspaces_root()
    with pytest.raises(SignInError, match="access code"):
        identity.sign_in_student(settings(), root, "wrong", "Ada", "sesame")
    assert identity.sign_in_student(settings(), root, CODE, "  Ada  Lovelace ", "sesame") == Person("student", "ada-lovelace")
    assert identity.sign_in_student(settings(), root, CODE, "ada lovelace", "sesame").name == "ada-lovelace"
    with pytest.raises(SignInError, match="taken"):
        identity.sign_in_student(settings(), root, CODE, "ADA LOVELACE", "guess")
    with pytest.raises(SignInError, match="cannot name a workspace"):
        identity.sign_in_student(settings(), root, CODE, "../teacher", "sesame")
    with pytest.raises(SignInError, match="teacher password"):
        identity.sign_in_teacher(settings(), CODE)
    assert identity.sign_in_teacher(settings(), PASSWORD) == TEACHER


def test_a_token_signs_a_student_in_until_the_word_is_reset(classroom):
    root = workspaces_root()
    ada = identity.sign_in_student(settings(), root, CODE, "ada", "sesame")
    token = identity.token(settings(), root, ada)
    assert identity.from_token(settings(), root, token) == ada
    name, _, signature = token.partition(".")
    assert identity.from_token(settings(), root, f"bob.{signature}") is None
    other_last = "B" if signature.endswith("A") else "A"  # a signature ends in "A" once in 64
    assert identity.from_token(settings(), root, f"{name}.{signature[:-1]}{other_last}") is None
    assert identity.token(settings(), root, TEACHER) is None  # never in the address
    identity.reset_word(root, "ada")
    assert identity.from_token(settings(), root, token) is None


# --- workspaces and permissions ---------------------------------------------------------


def test_students_see_their_own_runs_the_teacher_sees_all(as_person):
    as_person(ADA)
    finished_run(runs.runs_root() / "mine")
    ada_tokenizers = tokenizers_dir()
    as_person(BOB)
    finished_run(runs.runs_root() / "mine")
    finished_run(runs.runs_root() / "other")
    assert sorted(i.name for i in runs.list_runs()) == ["mine", "other"]
    assert tokenizers_dir() != ada_tokenizers and "bob" in tokenizers_dir().parts
    as_person(ADA)
    assert [i.name for i in runs.list_runs()] == ["mine"]
    with pytest.raises(runs.RunError):
        runs.run_folder("bob/other")
    as_person(TEACHER)
    assert sorted(i.name for i in runs.list_runs()) == ["ada/mine", "bob/mine", "bob/other"]
    assert runs.run_info(runs.run_folder("bob/other")).name == "bob/other"


def test_students_see_shared_models_and_their_own(as_person, classroom):
    def model(folder: Path) -> None:
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"\0")

    model(classroom / "runs" / "gpt2-small")  # the teacher's, shared
    as_person(BOB)
    model(runs.runs_root() / "bobs-model")
    as_person(ADA)
    names = {m.name for m in find_models()}
    assert "gpt2-small" in names and "bobs-model" not in names


def test_a_student_cannot_stop_or_delete_anothers_run_the_teacher_can(as_person):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        as_person(BOB)
        folder = finished_run(runs.runs_root() / "long", sleeper.pid, psutil.Process(sleeper.pid).create_time())
        assert runs.run_info(folder).state == "running"
        as_person(ADA)
        for action in (runs.stop_run, runs.delete_run):
            with pytest.raises(runs.RunError):
                action("bob/long")
        assert not workspace.can_manage(runs.RunInfo("long", folder, "running"))
        assert sleeper.poll() is None and folder.is_dir()
        as_person(TEACHER)
        assert workspace.can_manage(runs.RunInfo("long", folder, "running"))
        assert runs.stop_run("bob/long")
        assert sleeper.wait(timeout=10) == -signal.SIGTERM
        runs.delete_run("bob/long")
        assert not folder.exists()
    finally:
        sleeper.kill()


def test_a_student_may_keep_one_run_going_and_ten_in_all(as_person):
    as_person(ADA)
    assert workspace.run_limit_problem([]) is None
    going = runs.RunInfo("a", Path("a"), "queued")
    assert "at a time" in workspace.run_limit_problem([going])
    done = [runs.RunInfo(str(n), Path(str(n)), "finished") for n in range(10)]
    assert "delete one" in workspace.run_limit_problem(done)
    as_person(TEACHER)
    assert workspace.run_limit_problem([going, *done]) is None
    as_person(identity.VISITOR)
    assert workspace.run_limit_problem([]) == "sign in first"


def test_continuing_a_run_counts_against_the_runs_going_not_the_runs_kept(as_person):
    as_person(ADA)
    done = [runs.RunInfo(str(n), Path(str(n)), "finished") for n in range(10)]
    assert workspace.training_limit_problem(done) is None  # a full workspace may still train one of its runs on
    assert "at a time" in workspace.training_limit_problem([runs.RunInfo("a", Path("a"), "running"), *done])
    first = finished_run(runs.runs_root() / "first")
    (first / "state.pt").write_bytes(b"")
    assert runs.continue_problem(runs.run_info(first)) is None
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        finished_run(runs.runs_root() / "second", sleeper.pid, psutil.Process(sleeper.pid).create_time())
        assert "at a time" in runs.continue_problem(runs.run_info(first))
    finally:
        sleeper.kill()


# --- the app: sign-in and the GPT-2 import ------------------------------------------------


def app() -> AppTest:
    return AppTest.from_file(str(REPO / "app.py"), default_timeout=120)


def test_sign_in_through_the_app_keeps_a_student_signed_in_after_a_refresh(classroom):
    at = app().run()
    assert at.text_input(key="sign_in_code") and not at.exception
    at.text_input(key="sign_in_code").input("nope")
    at.text_input(key="sign_in_name").input("Ada")
    at.text_input(key="sign_in_word").input("sesame")
    at.button[0].click().run()
    assert "access code" in at.error[0].value
    at.text_input(key="sign_in_code").input(CODE)
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    token = at.query_params["who"][0] if isinstance(at.query_params["who"], list) else at.query_params["who"]
    assert token.startswith("ada.")
    assert any("ada" in c.value for c in at.sidebar.caption)

    refreshed = app()
    refreshed.query_params["who"] = token
    refreshed.run()
    assert not [t for t in refreshed.text_input if t.key == "sign_in_code"] and any("ada" in c.value for c in refreshed.sidebar.caption)
    forged = app()
    forged.query_params["who"] = "bob." + token.partition(".")[2]
    forged.run()
    assert forged.text_input(key="sign_in_code")


def test_local_server_paths_are_offered_to_the_teacher_and_a_local_user_only(app_dirs, monkeypatch):
    local = app().run()
    assert "A file or folder on this machine" in local.radio(key="gpt2_source").options
    for name, value in (("LM_CLASSROOM", "1"), ("LM_ACCESS_CODE", CODE), ("LM_TEACHER_PASSWORD", PASSWORD)):
        monkeypatch.setenv(name, value)
    student = app().run()
    student.text_input(key="sign_in_code").input(CODE)
    student.text_input(key="sign_in_name").input("ada")
    student.text_input(key="sign_in_word").input("sesame")
    student.button[0].click().run()
    assert not student.exception
    assert not [r for r in student.radio if r.key == "gpt2_source"]
    assert any("teacher imports GPT-2" in i.value for i in student.info)
    teacher = app().run()
    teacher.text_input(key="sign_in_password").input(PASSWORD)
    teacher.button[1].click().run()
    assert "A file or folder on this machine" in teacher.radio(key="gpt2_source").options


# --- the line for training slots ------------------------------------------------------------


def test_the_wait_is_guessed_from_the_pace_of_the_runs_in_the_slots():
    holders = [slots.Holder(step=10, max_steps=110, seconds=10.0), slots.Holder(step=50, max_steps=60, seconds=50.0)]
    assert slots.estimate_wait(2, holders, []) == pytest.approx(10.0)  # the second frees its slot in 10 s
    assert slots.estimate_wait(2, holders, [40]) == pytest.approx(50.0)  # after one of 40 steps at 1 s a step
    assert slots.estimate_wait(2, [slots.Holder(0, 10, 3.0)], []) == 0.0  # a slot is free
    assert slots.estimate_wait(1, [slots.Holder(0, 10, 3.0)], []) is None  # no pace yet
    assert slots.queued_message(3, 130) == "3rd in line, about 2 min"
    assert [slots.ordinal(n) for n in (1, 2, 11, 22, 113)] == ["1st", "2nd", "11th", "22nd", "113th"]


WAITER = """
import sys, time
from lm.slots import training_slot
with training_slot(sys.argv[1], 100):
    print("training", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.mark.slow
def test_runs_wait_in_line_first_come_first_served_and_stop_while_waiting(tmp_path):
    env = {**os.environ, slots.SLOTS_ENV: "1", slots.QUEUE_ENV: str(tmp_path / "queue"), "PYTHONPATH": str(REPO)}
    folders = [tmp_path / name for name in ("first", "second", "third")]

    def start(folder: Path, seconds: float) -> subprocess.Popen:
        folder.mkdir()
        return subprocess.Popen([sys.executable, "-c", WAITER, str(folder), str(seconds)], env=env,
                                stdout=subprocess.PIPE, text=True)

    def status(folder: Path) -> dict:
        path = folder / STATUS_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    first = start(folders[0], 60)
    assert first.stdout.readline() == "training\n"
    second = start(folders[1], 0)
    wait_for(lambda: status(folders[1]).get("position") == 1, timeout=60)
    third = start(folders[2], 0)
    wait_for(lambda: status(folders[2]).get("position") == 2, timeout=60)
    second.send_signal(signal.SIGTERM)  # Stop while it waits
    assert second.wait(timeout=30) == 0 and status(folders[1])["state"] == "stopped"
    wait_for(lambda: status(folders[2]).get("position") == 1, timeout=30)
    assert third.poll() is None  # still waiting: the slot is taken
    first.kill()  # a killed holder frees its slot
    first.wait()
    assert third.stdout.readline() == "training\n"
    assert third.wait(timeout=30) == 0
    assert not list((tmp_path / "queue").glob("*.ticket"))


@pytest.mark.slow
def test_a_fine_tuning_run_waits_in_the_same_line(tmp_path):
    from tests.checkpoints import make_checkpoint

    env = {**os.environ, slots.SLOTS_ENV: "1", slots.QUEUE_ENV: str(tmp_path / "queue"), "PYTHONPATH": str(REPO)}
    source = make_checkpoint(tmp_path / "source", block_size=48)
    data = tmp_path / "spam.csv"
    data.write_text("text,label\n" + "win a prize now,spam\nsee you at lunch,ham\n" * 8, encoding="utf-8")
    (tmp_path / "holder").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", WAITER, str(tmp_path / "holder"), "60"], env=env,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "training\n"
    out = tmp_path / "fine"
    tuning = subprocess.Popen([sys.executable, "-m", "lm", "finetune", "classify", "--from", str(source), "--out", str(out),
                               "--data", str(data), "--max-steps", "2", "--batch-size", "4"], env=env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status = out / STATUS_FILE
    wait_for(lambda: status.is_file() and json.loads(status.read_text()).get("position") == 1, timeout=120)
    holder.kill()
    holder.wait()
    assert tuning.wait(timeout=120) == 0
    assert json.loads(status.read_text())["state"] == "finished"
