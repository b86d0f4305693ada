"""Teacher mode in a real browser: a link opens the Generate page with its settings, a change
rewrites the URL and the copy-link box, another page does not inherit them; a chart downloads
as PNG (plotly's camera) and as standalone HTML; the presenter view hides the advanced controls."""

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, wait_until_idle
from tests.checkpoints import make_checkpoint

MODEL = "teacher-demo"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def checkpoint(app_home):
    return make_checkpoint(app_home / "runs" / MODEL, n_layer=2, n_head=2)


def params(page) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def test_a_link_reopens_the_page_and_follows_its_changes(app_url, page, checkpoint):
    page.goto(f"{app_url}/generate?gen_model={MODEL}&gen_temperature=1.3&gen_top_k=7&gen_max_new=5")
    wait_until_idle(page)
    expect(page.get_by_role("slider", name="Temperature")).to_have_value("1.3")
    expect(page.get_by_role("spinbutton", name="Top-k")).to_have_value("7")

    page.get_by_role("slider", name="Temperature").press("ArrowRight")  # one step of 0.05
    wait_until_idle(page)
    expect(page).to_have_url(re.compile(r"gen_temperature=1\.35"))
    shown = params(page)
    shown.pop("gen_model", None)  # left out when it is the default (the first model on disk)
    assert shown == {"gen_temperature": "1.35", "gen_top_k": "7", "gen_max_new": "5"}

    page.get_by_role("button", name="🔗 Copy link").click()
    link = page.get_by_test_id("stPopoverBody").locator("code").inner_text().strip()
    assert urlsplit(link).path == "/generate" and parse_qs(urlsplit(link).query) == parse_qs(urlsplit(page.url).query)
    page.keyboard.press("Escape")

    other = page.context.new_page()  # a student opening the link
    other.goto(link)
    wait_until_idle(other)
    expect(other.get_by_role("slider", name="Temperature")).to_have_value("1.35")
    expect(other.get_by_role("spinbutton", name="Top-k")).to_have_value("7")
    other.close()

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Tokenizer").click()
    expect(page).to_have_url(re.compile(r"/tokenizer"))  # the switch has happened: idle before it proves nothing
    wait_until_idle(page)
    assert not [key for key in params(page) if key.startswith("gen_")]  # another page's settings stay behind


def test_a_chart_downloads_as_png_and_as_html(app_url, page, checkpoint, tmp_path):
    page.goto(f"{app_url}/generate?gen_model={MODEL}&gen_max_new=5")
    wait_until_idle(page)
    page.get_by_role("button", name="Generate", exact=True).click()
    wait_until_idle(page)
    chart = page.locator(".js-plotly-plot").first
    chart.hover()
    with page.expect_download() as png:
        chart.locator('[data-title="Download plot as a PNG"]').click()
    assert png.value.suggested_filename == "next-token-1.png"
    assert (png.value.path()).read_bytes()[:8] == PNG_SIGNATURE

    with page.expect_download() as html:
        page.get_by_role("button", name="⬇ HTML").first.click()
    assert html.value.suggested_filename == "next-token-1.html"
    text = html.value.path().read_text(encoding="utf-8")
    assert text.lower().startswith("<!doctype html>") and "Plotly.newPlot" in text and "<script src=" not in text


def test_presenter_view_hides_the_advanced_controls(app_url, page, checkpoint):
    page.goto(f"{app_url}/generate?gen_model={MODEL}&gen_max_new=5")
    wait_until_idle(page)
    expect(page.get_by_role("spinbutton", name="Top-k")).to_be_visible()
    page.get_by_text("🎓 Presenter view").click()
    wait_until_idle(page)
    expect(page).to_have_url(re.compile("presenter=true"))
    expect(page.get_by_role("spinbutton", name="Top-k")).to_be_hidden()
    expect(page.get_by_role("slider", name="Top-p")).to_be_hidden()
    expect(page.get_by_role("slider", name="Temperature")).to_be_visible()
    size = page.evaluate("getComputedStyle(document.documentElement).fontSize")
    assert size == "24px"
    page.get_by_role("button", name="Generate", exact=True).click()
    wait_until_idle(page)
    screenshot(page, "teacher-presenter-view")

    expect(page.get_by_test_id("stSidebarNav")).not_to_be_in_viewport()  # the projector gets the sidebar's width
    page.get_by_test_id("stExpandSidebarButton").click()
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Tokenizer").click()  # it follows every page
    wait_until_idle(page)
    assert params(page).get("presenter") == "true"
    screenshot(page, "teacher-presenter-tokenizer")
