"""Watching a model learn, in a real browser: the head-detector heatmap opens a head, and the
training-step slider replays the chosen head's attention beside its scores and the loss."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, wait_until_idle
from tests.checkpoints import make_checkpoint, write_snapshots

RUN = "watch-run"
STEPS = tuple(range(0, 201, 25))


@pytest.fixture(scope="module")
def run(app_home):
    """A run folder with a checkpoint and hand-made snapshots: layer 0's head 0 learns to look at the previous token."""
    folder = make_checkpoint(app_home / "runs" / RUN, n_layer=2, n_head=2)
    write_snapshots(folder, steps=STEPS)
    return folder


def open_tab(app_url, page, tab: str) -> None:
    page.goto(f"{app_url}/attention?model={RUN}")
    page.locator(".js-plotly-plot").first.wait_for()
    wait_until_idle(page)
    page.get_by_role("tab", name=tab).click()
    wait_until_idle(page)


def titles(page):
    return page.locator(".js-plotly-plot .gtitle")


def test_detector_heatmap_hovers_and_opens_a_head(app_url, page, run):
    open_tab(app_url, page, "Head detectors")
    expect(titles(page)).to_have_text([f"{RUN}: previous token score"])
    page.locator(".st-key-att_detector").get_by_text("first token", exact=True).click()
    wait_until_idle(page)
    expect(titles(page)).to_have_text([f"{RUN}: first token score"])
    cells = page.locator(".js-plotly-plot .nsewdrag").first
    cells.scroll_into_view_if_needed()
    box = cells.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.75, steps=5)  # layer 1, head 1
    expect(page.locator(".js-plotly-plot .hoverlayer")).to_contain_text("layer 1 · head 1")
    expect(page.locator(".js-plotly-plot .hoverlayer")).to_contain_text("first token:")
    screenshot(page, "watch-head-detectors")

    button = page.locator('[class*="st-key-att_open_"] button').first
    label = button.inner_text()  # "layer L · head H: score"
    layer, head = (int(part.split()[-1]) for part in label.split(":")[0].split("·"))
    button.click()
    wait_until_idle(page)
    expect(page.get_by_role("tab", name="Attention map")).to_have_attribute("aria-selected", "true")
    expect(titles(page)).to_have_text([f"{RUN}: layer {layer}, head {head}"])


def test_slider_scrubs_through_training(app_url, page, run):
    open_tab(app_url, page, "Across training")
    expect(titles(page).first).to_have_text(f"layer 0, head 0 at step {STEPS[-1]}")
    screenshot(page, "watch-across-training-end")

    thumb = page.locator(".st-key-att_train_step_watch-run").get_by_role("slider")
    thumb.focus()
    thumb.press("Home")
    wait_until_idle(page)
    expect(titles(page).first).to_have_text("layer 0, head 0 at step 0")
    thumb.press("ArrowRight")
    thumb.press("ArrowRight")
    wait_until_idle(page)
    expect(titles(page).first).to_have_text(f"layer 0, head 0 at step {STEPS[2]}")
    expect(page.get_by_text(f"Layer 0, head 0 at step {STEPS[2]}:")).to_be_visible()
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    screenshot(page, "watch-across-training-early")
