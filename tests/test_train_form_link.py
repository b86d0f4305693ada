"""The Train form's address when its defaults move under its values: a custom size's defaults are
the first size's, so leaving another preset must put its sizes into the address (and the link),
or a student opening it gets the first size's."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from lm.plan import PRESETS

REPO = Path(__file__).resolve().parents[1]


def test_leaving_a_preset_puts_its_sizes_in_the_address(app_dirs):
    at = AppTest.from_file(str(REPO / "app_pages" / "train.py"), default_timeout=120).run()
    at.radio(key="train_preset").set_value("small").run()
    at.number_input(key="train_n_layer").set_value(3).run()
    assert not at.exception, at.exception
    small = PRESETS["small"].options
    for name in ("n_head", "n_embd", "block_size", "max_steps"):  # the first size's differ: they must be listed
        assert at.query_params.get(f"train_{name}") == str(small[name]), name
    assert at.query_params["train_preset"] == "custom" and at.query_params["train_n_layer"] == "3"

    student = AppTest.from_file(str(REPO / "app_pages" / "train.py"), default_timeout=120)
    student.query_params.update(at.query_params)
    student.run()
    for name in ("n_layer", "n_head", "n_embd", "block_size", "max_steps"):
        assert student.number_input(key=f"train_{name}").value == at.number_input(key=f"train_{name}").value, name
