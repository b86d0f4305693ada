"""The Train page in a real browser: start a tiny run, watch its loss chart grow while
the page stays live, come back to it after a refresh, stop it."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import expect

from tests.browser.conftest import screenshot, wait_until_idle

SETTINGS = {  # small enough to train fast, long enough to stop half-way
    "Layers": 1, "Heads per layer": 2, "Width (n_embd)": 32, "Context (tokens)": 32, "Steps": 20_000,
    "Batch (sequences)": 8, "Log every (steps)": 2, "Validate every (steps)": 20, "Sample every (steps)": 20,
    "Vocabulary size": 320,
}


def set_number(page, label: str, value) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    wait_until_idle(page)


def loss_points(page) -> int:
    """Points on the loss chart's training curve, as plotly holds them in the page."""
    return page.evaluate(
        "() => { const plot = document.querySelector('.js-plotly-plot');"
        " return plot && plot.data ? plot.data[0].x.length : 0; }"
    )


def test_start_watch_refresh_and_stop_a_run(app_url, app_home, page):
    page.goto(f"{app_url}/train")
    wait_until_idle(page)
    form = page.locator("details", has=page.locator("summary", has_text="Start a new run"))
    if form.get_attribute("open") is None:  # closed while runs exist (another test's)
        form.locator("summary").click()
    page.get_by_text("Time per step").wait_for(timeout=60_000)  # after measuring this device's speed
    wait_until_idle(page)
    screenshot(page, "train-setup")

    for label, value in SETTINGS.items():
        set_number(page, label, value)
    expect(page.get_by_role("radiogroup", name="Size").get_by_role("radio", name="custom")).to_be_checked()  # changing a size leaves the preset
    name = page.get_by_label("Run name", exact=True)
    name.fill("browser-run")
    name.press("Enter")
    wait_until_idle(page)
    page.get_by_role("button", name="Start training").click()

    page.get_by_role("heading", name="Run browser-run").wait_for()
    assert parse_qs(urlsplit(page.url).query)["run"] == ["browser-run"]  # a refresh comes back to it
    page.wait_for_function(
        "() => { const p = document.querySelector('.js-plotly-plot'); return p && p.data && p.data[0].x.length >= 3; }",
        timeout=120_000,
    )
    first = loss_points(page)
    page.wait_for_function(f"() => document.querySelector('.js-plotly-plot').data[0].x.length > {first}", timeout=60_000)
    assert loss_points(page) > first  # the chart grows by itself, no click needed
    page.get_by_text("What the model writes at step").wait_for(timeout=60_000)
    screenshot(page, "train-running")

    page.reload()  # a refresh comes back to the run, still live
    page.get_by_role("heading", name="Run browser-run").wait_for()
    page.wait_for_function("() => { const p = document.querySelector('.js-plotly-plot'); return p && p.data; }")
    seen = loss_points(page)
    page.wait_for_function(f"() => document.querySelector('.js-plotly-plot').data[0].x.length > {seen}", timeout=60_000)

    page.get_by_role("button", name="Stop").click()
    page.get_by_text("⏹️ stopped").first.wait_for(timeout=60_000)
    wait_until_idle(page)
    status = json.loads((app_home / "runs" / "browser-run" / "status.json").read_text())
    assert status["state"] == "stopped" and 0 < status["step"] < 20_000
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)
    screenshot(page, "train-stopped")
