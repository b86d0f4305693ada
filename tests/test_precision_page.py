"""The Train page says in which number format a planned run will compute, and why."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from lm.plan import PRESETS
from tests.conftest import REPO


def test_the_train_page_names_the_runs_number_format(app_dirs):
    at = AppTest.from_file(str(REPO / "app_pages" / "train.py"), default_timeout=120).run()
    at.radio(key="train_preset").set_value(list(PRESETS)[0]).run()
    assert not at.exception, at.exception
    shown = [c.value for c in at.caption if c.value.startswith("Number format:")]
    # the tests keep fp32 on every CPU (LM_CPU_BF16=0, tests/conftest.py), and the page says so
    assert shown == ["Number format: fp32: auto, with LM_CPU_BF16=0: fp32 on every CPU; every number computed in fp32."]
