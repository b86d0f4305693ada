"""The Tokenizer page in a real browser: type text, read the chips and counts, train a BPE."""

import tiktoken
from playwright.sync_api import expect

from explorer.navigation import PAGES
from tests.browser.conftest import screenshot, wait_until_idle

TYPED = "Students type their own sentence: tokenization 1234 🦙!"


def test_typing_text_shows_its_tokens(app_url, page):
    page.goto(f"{app_url}/tokenizer")  # a deep link, as the first visit to a fresh server
    page.locator(".token-chips .tok").first.wait_for()
    wait_until_idle(page)
    sidebar = page.locator('[data-testid="stSidebarNav"]').inner_text()
    places = [sidebar.find(title) for title in ["Home"] + [p.title for p in PAGES]]
    assert -1 not in places and places == sorted(places), sidebar  # every page, in order
    assert page.locator(".token-chips .tok").count() > 20

    box = page.get_by_label("Text to tokenize")
    box.fill(TYPED)
    box.press("Control+Enter")
    page.get_by_text(f"{len(TYPED):,}", exact=True).wait_for()
    wait_until_idle(page)

    gpt2 = tiktoken.get_encoding("r50k_base")
    ids = gpt2.encode(TYPED)
    page.get_by_text(f"GPT-2 (r50k_base) · {len(ids)} tokens", exact=False).wait_for()
    expected = [gpt2.decode_single_token_bytes(i).decode("utf-8", "backslashreplace").replace(" ", "·") for i in ids]
    expect(page.locator(".token-chips").first.locator(".tok")).to_have_text(expected, use_inner_text=True)
    # GPT-2 splits the 4-byte llama emoji: its pieces are shown as raw bytes and marked as partial.
    partial = [label for label in expected if "\\x" in label]
    assert len(partial) == 3
    expect(page.locator(".token-chips").first.locator('.tok[title*="part of a UTF-8 character"]')).to_have_count(3)
    screenshot(page, "tokenizer-tokens")


def test_training_a_bpe_shows_merges_and_vocabulary(app_url, page):
    page.goto(f"{app_url}/tokenizer")
    wait_until_idle(page)
    page.get_by_role("tab", name="Train your own BPE").click()
    page.get_by_role("button", name="Train tokenizer").click()
    page.get_by_text("Learned 255 merges from Tiny Shakespeare").wait_for(timeout=60_000)
    wait_until_idle(page)
    page.get_by_role("tab", name="Train your own BPE").click()
    page.get_by_text("Merge 10:").wait_for()
    expect(page.locator(".js-plotly-plot")).to_have_count(1)
    screenshot(page, "tokenizer-train")
