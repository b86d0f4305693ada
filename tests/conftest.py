"""Shared test setup: the reference data beside the repository, and an environment
that never reaches the internet (tiktoken reads a copied cache, corpora go to a
fresh temporary folder)."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import torch
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SHAKESPEARE_FILE = SHARED_DATA / "tinyshakespeare.txt"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _require_shared_data() -> None:
    required = [SHAKESPEARE_FILE, SHARED_DATA / "tiktoken"]
    missing = [str(p) for p in required if not p.exists()]
    if missing:
        pytest.exit(
            f"The reference data is missing: {', '.join(missing)}. The tests read it from "
            f"{SHARED_DATA} (../shared/data beside the repository root); see its README.md.",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


def _local_only(request):
    """Wrap requests.Session.request so that only this machine can be reached."""

    @functools.wraps(request)
    def guarded(self, method, url, *args, **kwargs):
        if urlsplit(str(url)).hostname not in LOCAL_HOSTS:
            raise requests.ConnectionError(f"tests must not reach the internet (tried {method} {url})")
        return request(self, method, url, *args, **kwargs)

    return guarded


@pytest.fixture(scope="session", autouse=True)
def offline_environment(tmp_path_factory: pytest.TempPathFactory):
    """For the whole session: tiktoken reads a copy of the shared rank files,
    downloaded corpora are cached in a fresh folder (never the user's cache), and
    requests refuses any host but this machine (a missed cache fails fast)."""
    _require_shared_data()
    tiktoken_cache = tmp_path_factory.mktemp("tiktoken-cache")
    for rank_file in (SHARED_DATA / "tiktoken").iterdir():
        shutil.copyfile(rank_file, tiktoken_cache / rank_file.name)  # writable copies
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(tiktoken_cache))
        mp.setenv("LM_DATA_DIR", str(tmp_path_factory.mktemp("lm-data")))
        mp.setenv("LM_BUNDLED_MODELS", str(tmp_path_factory.mktemp("no-bundled-models")))  # tests see their own
        mp.setenv("LM_CPU_BF16", "0")  # auto trains in fp32 on every CPU, so curves compare exactly on any machine
        mp.setattr(requests.Session, "request", _local_only(requests.Session.request))
        yield


@pytest.fixture(scope="session")
def shakespeare_path() -> Path:
    """The shared Tiny Shakespeare file (read-only: copy it before changing anything)."""
    return SHAKESPEARE_FILE


@pytest.fixture(scope="session")
def shakespeare_text() -> str:
    return SHAKESPEARE_FILE.read_text(encoding="utf-8")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every HTTP request made through requests fails as if the machine were offline."""

    def refuse(*args, **kwargs):
        raise requests.ConnectionError("network disabled in tests")

    monkeypatch.setattr(requests.Session, "request", refuse)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run many times faster on one thread: two threads on two busy cores
    spend most of each small matmul waiting for each other. Per test, so a test that
    changes it (the trainer's `threads` option) cannot leak into the next."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def app_dirs(tmp_path, monkeypatch):
    """Fresh runs and tokenizers folders for a page test, and Tiny Shakespeare already cached."""
    for name, var in (("runs", "LM_RUNS_DIR"), ("tokenizers", "LM_TOKENIZERS_DIR"), ("data", "LM_DATA_DIR")):
        monkeypatch.setenv(var, str(tmp_path / name))
    (tmp_path / "data" / "corpora").mkdir(parents=True)
    shutil.copyfile(SHAKESPEARE_FILE, tmp_path / "data" / "corpora" / SHAKESPEARE_FILE.name)
    return tmp_path


def open_page(script: str, **query) -> AppTest:
    """Run one page script headless, on its own (without app.py's navigation and sidebar), with
    `query` in its address."""
    at = AppTest.from_file(str(REPO / script), default_timeout=120)
    at.query_params.update(query)
    at.run()
    assert not at.exception, at.exception
    return at
