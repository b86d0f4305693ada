"""Lesson 4 as shipped: it trains the copy task's preset, and its later steps open that run's
induction head on a text the task could have made. (That the preset's run grows the head the
lesson promises is tests/test_tasks.py's slow test; benchmarks/copy_lesson.py times it.)"""

from __future__ import annotations

from explorer.lessons import shipped_lessons
from lm.tasks import TASKS, prompt_length
from tests.test_tasks import LESSON_SCORE


def test_lesson_4_trains_the_copy_task_and_opens_the_induction_head_of_its_run():
    lesson = shipped_lessons()["4-attention-on-a-copy-task.toml"]
    train, detectors, *head_steps = lesson.steps
    assert (train.page, train.params["train_task"], train.params["train_name"]) == ("Train", "copy", "{run}")
    assert (detectors.params["att_tab"], detectors.params["att_detector"]) == ("Head detectors", "induction")
    assert [step.params["att_tab"] for step in head_steps] == ["Attention map", "Across training"]
    for step in head_steps:  # the head the run scores best past layer 0 (explorer.lesson_steps)
        assert (step.params["att_layer"], step.params["att_head"]) == ("{induction_layer}", "{induction_head}")

    task = TASKS["copy"]
    for step in (detectors, *head_steps):
        text = step.params["att_text"]
        prompt = text[: prompt_length(task, text)]
        assert step.params["att_model"] == "{run}"
        # a whole example with a long answer, within the context: the induction stripe runs its length
        assert prompt + task.solve(prompt) == text and len(task.solve(prompt)) >= 6
        assert len(text) <= task.preset["block_size"]


def test_lesson_4_says_what_its_preset_is_and_the_score_the_slow_test_checks():
    summary, preset = shipped_lessons()["4-attention-on-a-copy-task.toml"].summary, TASKS["copy"].preset
    assert (preset["n_layer"], preset["n_head"]) == (2, 1) and "two layers, one attention head in each" in summary
    assert f"layer 1's head scores above {LESSON_SCORE}" in summary
