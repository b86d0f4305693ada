"""Test helpers for a machine without network: empty download caches, and a local server
holding the shared reference files at their real URLs' paths, with requests pointed at it."""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import tiktoken.registry

from lm.finetune.data import DATASETS
from lm.prepare import class_files
from lm.tokenizer import tiktoken_file
from tests.conftest import SHARED_DATA


def shared_copy(name: str) -> Path:
    """The reference copy of a class file in ../shared/data."""
    if name == "tinyshakespeare":
        return SHARED_DATA / "tinyshakespeare.txt"
    if name in DATASETS:
        return SHARED_DATA / "finetune" / DATASETS[name].filename
    return SHARED_DATA / "tiktoken" / tiktoken_file(name).filename


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder quietly, noting each path asked for."""

    def do_GET(self):
        self.server.seen.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def serve_folder(root: Path):
    """An HTTP server on 127.0.0.1 serving `root`: yields its port and the list of paths asked for."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_port, server.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def empty_caches(tmp_path, monkeypatch):
    """No corpus and no rank file on this machine, and tiktoken forgets what it loaded."""
    monkeypatch.setenv("LM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """Every class file served at its URL's path by a server on 127.0.0.1; requests goes there
    instead of the internet. Yields the server's root folder and the list of paths asked for."""
    root = tmp_path / "www"
    for file in class_files().values():
        target = root / urlsplit(file.url).path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if file.member:  # served inside a zip archive, as its source serves it
            with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.write(shared_copy(file.name), file.member)
        else:
            shutil.copyfile(shared_copy(file.name), target)
    with serve_folder(root) as (port, seen):
        redirect_requests(monkeypatch, port)
        yield root, seen


def redirect_requests(monkeypatch, port: int) -> None:
    """Every request made through requests goes to the same path on 127.0.0.1:port instead."""
    request = requests.Session.request

    def to_mirror(self, method, url, *args, **kwargs):
        return request(self, method, f"http://127.0.0.1:{port}{urlsplit(url).path}", *args, **kwargs)

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setattr(requests.Session, "request", to_mirror)
