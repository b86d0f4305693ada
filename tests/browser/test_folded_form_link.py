"""The Train page's settings in a real browser, once its form is folded: Streamlit drops the
address parameters of widgets it does not draw, yet "Copy link" and "Save as a lesson" must
still carry them, so a student opening either gets the form as the teacher set it."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import expect

from tests.browser.conftest import screenshot, wait_until_idle

STEPS = "1234"  # no size preset's number of steps


def form(page):
    return page.locator("details", has=page.locator("summary", has_text="Start a new run"))


def set_form_open(page, is_open: bool) -> None:
    if (form(page).get_attribute("open") is not None) != is_open:
        form(page).locator("summary").click()
        wait_until_idle(page)


def copied_link(page) -> str:
    page.get_by_role("button", name="🔗 Copy link").click()
    link = page.get_by_test_id("stPopoverBody").locator("code").inner_text().strip()
    page.keyboard.press("Escape")
    return link


def test_a_folded_form_keeps_its_settings_in_the_link_and_the_lesson(app_url, page, tmp_path):
    page.goto(f"{app_url}/train")
    wait_until_idle(page)
    set_form_open(page, True)
    steps = page.get_by_label("Steps", exact=True)
    steps.fill(STEPS)
    steps.press("Enter")
    wait_until_idle(page)
    set_form_open(page, False)
    expect(page.get_by_label("Steps", exact=True)).to_have_count(0)  # folded: not drawn
    wait_until_idle(page)

    link = copied_link(page)
    assert urlsplit(link).path == "/train" and parse_qs(urlsplit(link).query)["train_max_steps"] == [STEPS]
    screenshot(page, "train-folded-form")

    page.get_by_role("button", name="🎓 Save as a lesson").click()
    page.get_by_role("button", name="➕ Add the Train page as step 1").click()
    wait_until_idle(page)
    page.get_by_label("Lesson title").fill("Steps")
    page.get_by_label("Lesson title").press("Enter")
    page.get_by_label("What the class will see").fill("A run of many steps.")
    page.get_by_label("What the class will see").press("Control+Enter")
    wait_until_idle(page)
    with page.expect_download() as saved:
        page.get_by_role("button", name="⬇ Download the lesson").click()
    lesson = json.loads(saved.value.path().read_text(encoding="utf-8"))
    assert lesson["steps"][0]["page"] == "Train" and lesson["steps"][0]["params"]["train_max_steps"] == STEPS
    page.keyboard.press("Escape")

    student = page.context.browser.new_page()  # another browser session opening the link
    student.goto(link)
    wait_until_idle(student)
    expect(student.get_by_label("Steps", exact=True)).to_have_value(STEPS)  # the link opens the form, set up
    student.close()
