"""Continuing a run from the run manager: a real tiny run stopped, then trained on in its own
folder; its curve goes on without a gap or a repeated step. What cannot be continued is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from explorer import runs
from lm import run_folder
from lm.plan import RunChoice, plan_run
from tests.checkpoints import make_checkpoint
from tests.helpers import TINY_RUN, wait_for
from tests.test_train_page import open_through_app


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LM_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


def state_of(name: str) -> runs.RunInfo:
    return runs.run_info(runs.run_folder(name))


def ended(name: str) -> runs.RunInfo | None:
    info = state_of(name)
    assert info.state not in ("failed", "died"), info.error
    return None if info.active else info


@pytest.mark.slow
def test_a_stopped_run_continues_its_curve_in_the_same_folder(root, shakespeare_text):
    plan = plan_run(RunChoice({**TINY_RUN, "max_steps": 100_000, "log_every": 1}, vocab_size=320,
                              text=shakespeare_text[:60_000]))
    runs.start_run("tiny", plan)
    with pytest.raises(runs.RunError, match="still training"):
        runs.continue_run("tiny", 50)
    wait_for(lambda: state_of("tiny").step >= 6)
    runs.stop_run("tiny")
    stopped = wait_for(lambda: ended("tiny"))
    assert stopped.state == "stopped"
    with pytest.raises(runs.RunError, match="already"):
        runs.continue_run("tiny", stopped.step)

    target = stopped.step + 12
    info = runs.continue_run("tiny", target)
    assert info.state == "starting" and info.active  # not the old "stopped" while the child loads
    done = wait_for(lambda: ended("tiny"))
    assert done.state == "finished" and done.step == done.max_steps == target
    steps = [record["step"] for record in run_folder.read_metrics(done.folder) if "train_loss" in record]
    assert steps == list(range(1, target + 1))  # one curve: no gap, no step twice
    log = (done.folder / run_folder.LOG_FILE).read_text(encoding="utf-8")
    assert log.count("parameters,") == 2  # the first part's log is kept, the second's follows it


def test_a_model_without_training_state_is_refused(root):
    make_checkpoint(root / "imported")
    info = state_of("imported")
    assert "no training state" in runs.continue_problem(info)
    with pytest.raises(runs.RunError, match="no training state"):
        runs.continue_run("imported", 100)
    assert not (root / "imported" / run_folder.LAUNCH_FILE).exists()  # nothing was started


def test_continue_to_a_chosen_end_by_default_the_planned_one_or_twice_as_far():
    from explorer.run_continue import default_target

    folder = Path("x")
    assert default_target(runs.RunInfo("a", folder, "stopped", step=13, max_steps=40)) == 40
    assert default_target(runs.RunInfo("a", folder, "finished", step=40, max_steps=40)) == 80
    assert default_target(runs.RunInfo("a", folder, "died", step=0, max_steps=None)) == 1


@pytest.mark.slow
def test_the_train_page_continues_a_finished_run(app_dirs, shakespeare_text):
    runs.start_run("tiny", plan_run(RunChoice({**TINY_RUN, "max_steps": 10, "log_every": 1}, vocab_size=320,
                                              text=shakespeare_text[:60_000])))
    wait_for(lambda: ended("tiny"))
    at = open_through_app(run="tiny")  # the run's links need the app's navigation
    assert at.number_input(key="train_continue_steps").value == 20  # twice as far by default
    at.button(key="train_continue").click().run()
    assert not at.exception, at.exception
    assert state_of("tiny").active
    done = wait_for(lambda: ended("tiny"))
    assert done.state == "finished" and done.step == 20
    steps = [record["step"] for record in run_folder.read_metrics(done.folder) if "train_loss" in record]
    assert steps == list(range(1, 21))


def test_the_train_page_says_why_an_imported_model_cannot_be_continued(app_dirs):
    make_checkpoint(app_dirs / "runs" / "imported")
    at = open_through_app(run="imported")
    assert any("cannot be continued" in info.value and "no training state" in info.value for info in at.info)
    assert not [b for b in at.button if b.key == "train_continue"]
