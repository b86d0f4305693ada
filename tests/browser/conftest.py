"""Browser harness: the real app on a free localhost port, driven by Debian's Chromium.

Screenshots go to test-artifacts/ in the repository root, to look at after a run."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import SHAKESPEARE_FILE

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder drives a browser: `-m "not browser"` leaves them all out."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.browser)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_home(tmp_path_factory) -> Path:
    """The app's working folders: runs/ (models go here), tokenizers/, data/."""
    return tmp_path_factory.mktemp("app-home")


@contextlib.contextmanager
def serve_app(home: Path, repo: Path = REPO):
    """`streamlit run app.py` of the checkout `repo` on a free port with its own runs, tokenizers
    and data folders under `home`; yields its address, stops it afterwards."""
    (home / "data" / "corpora").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SHAKESPEARE_FILE, home / "data" / "corpora" / SHAKESPEARE_FILE.name)  # "downloaded" already
    env = {
        **os.environ,
        "LM_DATA_DIR": str(home / "data"),
        "LM_RUNS_DIR": str(home / "runs"),
        "LM_TOKENIZERS_DIR": str(home / "tokenizers"),
    }
    port = _free_port()
    log = open(home / "streamlit.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true"],
        cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/_stcore/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None:
                pytest.fail(f"the app exited early:\n{(home / 'streamlit.log').read_text()}")
            time.sleep(0.3)
        else:
            pytest.fail("the app did not answer /_stcore/health within 60 s")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="session")
def app_url(app_home) -> str:
    """The app shared by the browser tests."""
    with serve_app(app_home) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def wait_until_idle(page) -> None:
    """Wait for the script run to finish, not for a fixed time."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=60_000)


def screenshot(page, name: str) -> Path:
    """The whole page: Streamlit scrolls inside its main element, so grow the viewport to fit it."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    viewport = page.viewport_size
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": viewport["width"], "height": max(viewport["height"], height)})
    page.screenshot(path=str(path))
    page.set_viewport_size(viewport)
    return path
