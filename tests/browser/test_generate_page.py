"""The Generate page in a real browser: type a prompt, watch the text stream in, pick a
token and read its chart, then score a text."""

import pytest
from playwright.sync_api import expect

from lm.generate import Sampling, generate
from tests.browser.conftest import screenshot, wait_until_idle
from tests.test_generate_page import peaked_checkpoint

PROMPT = "ROMEO: what"
NEW_TOKENS = 400
MODEL = "generate-demo"


@pytest.fixture(scope="module")
def checkpoint(app_home):
    """A random checkpoint in the running app's runs folder (the app looks for models on every rerun),
    big enough that 400 tokens take a visible while, so streaming can be seen."""
    return peaked_checkpoint(app_home / "runs" / MODEL, n_layer=4, n_head=4, n_embd=256)


def shown_ids(page) -> list[int]:
    return page.locator(".gen-text .gen-tok").evaluate_all("spans => spans.map(s => Number(s.dataset.id))")


def test_generate_streams_text_then_explains_each_token(app_url, page, checkpoint):
    settings = Sampling(temperature=0.8, top_k=50, max_new_tokens=NEW_TOKENS, seed=0)  # the page's defaults
    prompt_ids = checkpoint.tokenizer.encode(PROMPT)
    expected = [s.token_id for s in generate(checkpoint.model, checkpoint.tokenizer, prompt_ids, settings)]
    assert len(expected) > 100  # long enough to take several redraws

    page.goto(f"{app_url}/generate")
    wait_until_idle(page)
    page.get_by_test_id("stSelectbox").filter(has_text="Model").locator("input").click()  # other tests add models
    page.get_by_role("option", name=MODEL, exact=True).click()
    wait_until_idle(page)
    prompt = page.get_by_label("Prompt")
    prompt.fill(PROMPT)
    prompt.press("Control+Enter")
    wait_until_idle(page)
    length = page.get_by_role("spinbutton", name="Max new tokens")
    length.fill(str(NEW_TOKENS))
    length.press("Enter")
    wait_until_idle(page)
    page.get_by_role("slider", name="Writing speed").press("End")  # full speed: the last choice
    wait_until_idle(page)
    expect(page.get_by_role("slider", name="Writing speed")).to_have_attribute("aria-valuetext", "full speed")

    page.get_by_role("button", name="Generate", exact=True).click()
    page.locator(".gen-text .gen-tok").first.wait_for()
    first_seen = len(shown_ids(page))
    wait_until_idle(page)
    assert shown_ids(page) == expected
    assert first_seen < len(expected)  # the text was on screen before generation ended
    page.get_by_text(f"{len(expected)} new tokens in").wait_for()
    expect(page.locator(".gen-text .gen-prompt")).to_have_text(PROMPT)

    chart = page.locator(".js-plotly-plot")
    expect(chart).to_have_count(1)
    expect(chart.locator(".gtitle")).to_contain_text("Token 1:")
    page.get_by_role("slider", name="Pick a generated token").press("ArrowRight")
    wait_until_idle(page)
    expect(chart.locator(".gtitle", has_text="Token 2:")).to_have_count(1)
    expect(chart.locator(".gtitle")).to_have_count(1)
    expect(page.locator('.gen-text .gen-tok[style*="outline"]')).to_have_count(1)
    screenshot(page, "generate-text")

    page.get_by_role("tab", name="Score a text").click()
    expect(page.get_by_text("Perplexity", exact=True)).to_be_visible()
    expect(page.locator(".score-text .gen-tok").first).to_be_visible()
    screenshot(page, "generate-score")


def test_a_slow_writing_speed_shows_the_tokens_one_by_one(app_url, page, checkpoint):
    page.goto(f"{app_url}/generate?gen_model={MODEL}&gen_max_new=12&gen_seed=3")
    wait_until_idle(page)
    speed = page.get_by_role("slider", name="Writing speed")
    speed.press("Home")  # 1 token/s, then two steps up: 5
    speed.press("ArrowRight")
    speed.press("ArrowRight")
    wait_until_idle(page)
    expect(speed).to_have_attribute("aria-valuetext", "5 tokens/s")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.locator(".gen-text .gen-tok").first.wait_for()
    seen = [len(shown_ids(page))]
    for _ in range(3):
        page.wait_for_timeout(500)
        seen.append(len(shown_ids(page)))
    assert seen == sorted(seen) and seen[0] < seen[-1] < 12  # arriving, a few at a time, not all at once
    page.get_by_text("12 new tokens in").wait_for()
    expect(page.get_by_text("shown at 5/s", exact=False)).to_be_visible()
    screenshot(page, "generate-slow")
