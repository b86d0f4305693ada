"""The navigation in a real browser: a link straight to a page, on a server that has just
started, opens that page inside the app (its sidebar lists every page), not the page file alone."""

from playwright.sync_api import expect

from explorer.navigation import PAGES
from tests.browser.conftest import serve_app, wait_until_idle


def test_a_fresh_server_opens_a_deep_link_inside_the_app(tmp_path, page):
    with serve_app(tmp_path) as url:
        page.goto(f"{url}/tokenizer")
        wait_until_idle(page)
        expect(page.get_by_role("heading", name="🔤 Tokenizer")).to_be_visible()
        nav = page.get_by_test_id("stSidebarNav")
        for info in PAGES:
            expect(nav.get_by_text(info.title, exact=True)).to_be_visible()
        expect(page).to_have_title("LLM Explorer")
