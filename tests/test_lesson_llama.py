"""Lesson 7, "What did Llama change?": two runs one switch apart, named per session around
{run}, overlaid on the Train page with the difference named (explorer.run_differences)."""

from __future__ import annotations

import json
from dataclasses import asdict

from explorer.lesson_steps import RUN_NAMES
from explorer.paths import runs_root
from explorer.run_differences import differences_sentence, setting_differences
from explorer.run_recorded import recorded
from lm.architectures import ARCH_FIELDS
from lm.checkpoint import save_checkpoint
from lm.run_folder import TRAIN_CONFIG_FILE
from lm.train_config import TrainConfig
from tests.checkpoints import shakespeare_bpe, tiny_gpt
from tests.test_lesson_steps import links, open_step
from tests.test_train_page import fake_run

KEY = "7-what-did-llama-change"
TRAIN_KEYS = [f"train_{name}" for name in TrainConfig.__dataclass_fields__]


def test_differences_are_named_and_the_rest_said_to_be_the_same():
    base = asdict(TrainConfig(data="task:copy"))
    runs = {"a": base, "b": base | {"position": "rope", "out": "elsewhere", "threads": 2}}
    assert setting_differences(runs) == {"position": ["learned", "rope"]}  # where it ran is not a difference
    assert differences_sentence(runs) == "The runs differ in **position**: learned vs rope; everything else the same."
    many = runs | {"c": base | {"mlp": "swiglu", "lr": 0.01, "seed": 3, "n_kv_head": 2, "data": "a_b*.txt"}}
    sentence = differences_sentence(many)
    assert sentence.count("**") == 8 and "and 2 more settings" in sentence and "everything else" not in sentence
    assert differences_sentence({"a": base, "b": dict(base)}).startswith("These runs have the same settings")
    assert differences_sentence({"a": base, "imported": {}}).startswith("An imported or older run")
    assert differences_sentence({"a": base}) == ""


def test_a_run_from_before_the_dial_differs_only_where_it_trained_differently():
    new = asdict(TrainConfig(data="task:copy"))
    old = {key: value for key, value in new.items() if key not in ARCH_FIELDS}  # recorded before the dial existed
    assert setting_differences({"old": old, "new": new}) == {}  # it trained as GPT-2: the dial's defaults
    assert setting_differences({"old": old, "new": new | {"norm": "rmsnorm"}}) == {"norm": ["layernorm", "rmsnorm"]}


def test_the_two_training_steps_differ_in_one_switch(app_dirs):
    first = open_step(KEY, 1)
    session = {RUN_NAMES: dict(first.session_state[RUN_NAMES])}
    second = open_step(KEY, 2, session=session)
    base = session[RUN_NAMES][KEY]
    assert first.text_input(key="train_name").value == base
    assert second.text_input(key="train_name").value == f"{base}-rope"
    values = [{k: at.session_state[k] for k in TRAIN_KEYS if k in at.session_state} for at in (first, second)]
    assert values[0]["train_max_steps"] == 1000 and values[0]["train_seed"] == values[1]["train_seed"]
    assert len(values[0].keys() & values[1].keys()) >= 28  # every setting drawn in both (the windowed layers: no window)
    differing = {k for k in values[0].keys() & values[1].keys() if values[0][k] != values[1][k]}
    assert differing == {"train_position"}


def test_the_second_run_is_followed_and_offered_and_both_are_overlaid(app_dirs):
    base = "llama-lesson-beef"
    root = runs_root()
    for name, position in ((base, "learned"), (f"{base}-rope", "rope")):
        folder = fake_run(root, name, state="finished")
        options = asdict(TrainConfig(data="tinyshakespeare", position=position, out=str(folder)))
        (folder / TRAIN_CONFIG_FILE).write_text(json.dumps(options))
    fake_run(root, "someone-else", state="finished")  # newer runs of others are not compared
    at = open_step(KEY, 2, extra={"run": f"{base}-rope"})  # the student started the rope run
    assert at.session_state[RUN_NAMES][KEY] == base  # {run} stays the base name, not the rope run's
    assert links(at)[f"Open your run {base}-rope"] == {"run": f"{base}-rope"}
    at = open_step(KEY, 3, session={RUN_NAMES: {KEY: base}})
    assert at.multiselect(key="train_compare").value == [base, f"{base}-rope"]
    assert "The runs differ in **position**: learned vs rope; everything else the same." in [m.value for m in at.markdown]
    assert links(at)["Next ▶"]["att_model"] == f"{base}-rope"


def test_a_command_line_run_is_compared_by_its_checkpoints_settings(tmp_path):
    options = asdict(TrainConfig(position="rope"))
    folder = save_checkpoint(tmp_path / "cli", tiny_gpt(320), shakespeare_bpe(), {"config": options})
    assert recorded(folder, {}, False).options == options  # no train_config.json: the checkpoint's record
    (folder / TRAIN_CONFIG_FILE).write_text(json.dumps({"seed": 1}))
    assert recorded(folder, {}, False).options == {"seed": 1}
    assert recorded(tmp_path / "nothing", {}, False).options == {}
