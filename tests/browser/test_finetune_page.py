"""The Fine-tune page in Chromium, in presenter view at 1280×720 and 1920×1080: for a classifier,
a DPO and an instruction-tuned run (written by hand in lm finetune's format), each tab's main
picture lies on the first screen and no text is cut (the checks of test_presenter_fit)."""

from __future__ import annotations

import shutil
from urllib.parse import quote

import pytest

from lm.finetune.data import DATASETS
from tests.browser.conftest import ARTIFACTS, wait_until_idle
from tests.checkpoints import make_checkpoint
from tests.conftest import SHARED_DATA
from tests.browser.test_presenter_fit import PROBLEMS_JS, SIZES, main_picture_box, wait_for_picture
from tests.finetune_folders import fake_finetune_run

TABS = {"training": "📈 Training", "before-after": "⚖️ Before and after", "message": "💬 Try a message"}
VIEWS = [("ft-spam", "classify", tuple(TABS)), ("ft-polite", "dpo", ("training", "before-after")),
         ("ft-puzzles", "instruct", ("training", "before-after"))]


@pytest.fixture(scope="module")
def finetune_runs(app_home):
    for name, method, _ in VIEWS:
        if not (app_home / "runs" / name).exists():
            fake_finetune_run(app_home / "runs", name, method, checkpoint=method == "classify")


def answers_box(page) -> dict | None:
    """Instruction tuning's and DPO's picture: the answers before and after, side by side (the last code block)."""
    answers = page.locator("[data-testid='stMain'] [role='tabpanel']:not([hidden]) [data-testid='stCode']")
    return answers.last.bounding_box() if answers.count() else None


def test_fine_tune_views_fit_a_projector(app_url, browser, finetune_runs):
    failures = []
    for width, height in SIZES:
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(60_000)
        for name, _, tabs in VIEWS:
            for tab in tabs:
                page.goto(f"{app_url}/finetune?run={name}&presenter=true&ft_tab={quote(TABS[tab])}")
                wait_until_idle(page)
                wait_for_picture(page)
                page.wait_for_timeout(300)
                where = f"{name} {tab} at {width}×{height}"
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"presenter-{name}-{tab}-{width}x{height}.png"))
                box = main_picture_box(page) or answers_box(page)
                if box is None:
                    failures.append(f"{where}: no picture")
                elif box["y"] < 0 or box["y"] + box["height"] > height + 1 or box["x"] + box["width"] > width + 1:
                    failures.append(f"{where}: the picture spans y {box['y']:.0f}–{box['y'] + box['height']:.0f}")
                failures += [f"{where}: {problem}" for problem in page.evaluate(PROBLEMS_JS)]
        context.close()
    assert not failures, "\n".join(failures)


def test_the_costs_of_a_new_fine_tune_lie_on_a_projectors_first_screen(app_url, app_home, browser):
    """Without a run to watch, the form's four costs (parameters, memory, time per step, the whole
    run) sit beside the data choice, above the fold of a 1280×720 projector."""
    (app_home / "data" / "corpora").mkdir(parents=True, exist_ok=True)
    for dataset in DATASETS.values():  # "downloaded" already, where the app's server looks
        shutil.copyfile(SHARED_DATA / "finetune" / dataset.filename, app_home / "data" / "corpora" / dataset.filename)
    if not (app_home / "runs" / "ft-base").exists():
        make_checkpoint(app_home / "runs" / "ft-base", n_layer=2)  # a model to start from
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.goto(f"{app_url}/finetune?model=ft-base&presenter=true")
    page.get_by_text("Time per step").first.wait_for(timeout=600_000)  # timing the steps takes minutes on a loaded machine
    wait_until_idle(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "presenter-finetune-form-1280x720.png"))
    metrics = page.locator("[data-testid='stMetric']")
    assert metrics.count() == 4
    for metric in metrics.all():
        box = metric.bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 720, f"{metric.inner_text()}: {box}"
    context.close()
