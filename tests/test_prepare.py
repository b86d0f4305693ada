"""Preparing a machine for class (lm.prepare, `python -m lm download`), offline: a local server
holds the shared reference files at their real URLs' paths and requests is pointed at it; a
server that accepts and never answers stands for a network that drops packets."""

from __future__ import annotations

import dataclasses
import socket
from urllib.parse import urlsplit

import pytest
import requests

import lm.download
from lm.__main__ import main
from lm.download import NoNetworkError, fetch
from lm.prepare import class_files, missing_files, prepare
from lm.tokenizer import TiktokenTokenizer, tiktoken_file
from tests.offline import empty_caches, mirror, shared_copy  # noqa: F401 (fixtures)


@pytest.fixture
def silent_server():
    """A port that accepts connections (the kernel completes the handshake) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_prepare_fetches_every_file_with_progress_then_finds_them_present(mirror):
    root, seen = mirror
    files = list(class_files().values())
    assert missing_files(files) == files
    calls: dict[str, list[tuple[int, int]]] = {}

    outcomes = prepare(files, lambda file, done, total: calls.setdefault(file.name, []).append((done, total)))

    assert [o.state for o in outcomes] == ["downloaded"] * len(files)
    assert all(f.is_verified() for f in files) and missing_files(files) == []
    for file in files:
        assert file.path.read_bytes() == shared_copy(file.name).read_bytes()
        size = (root / urlsplit(file.url).path.lstrip("/")).stat().st_size if file.member else file.size  # a zip's
        assert calls[file.name][-1] == (size, size), "the progress reaches the download's size"
        assert [done for done, _ in calls[file.name]] == sorted(done for done, _ in calls[file.name])
    assert len(seen) == len(files)

    again = prepare(files)
    assert [o.state for o in again] == ["present"] * len(files)
    assert len(seen) == len(files), "a file already here was downloaded again"


def test_tiktoken_loads_what_prepare_fetched_without_asking_the_network(mirror, monkeypatch):
    prepare(list(class_files().values()))
    monkeypatch.setattr(requests.Session, "request", lambda *a, **k: pytest.fail("tiktoken tried the network"))
    for name, hello in (("r50k_base", [15496, 995]), ("cl100k_base", [9906, 1917]), ("o200k_base", [13225, 2375])):
        assert TiktokenTokenizer(name, download=False).encode("Hello world") == hello


def test_offline_the_first_failure_stops_the_rest_and_says_why(no_network):
    files = list(class_files().values())
    attempts = []
    original = requests.Session.request  # no_network's refusal

    def counted(*args, **kwargs):
        attempts.append(args)
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(requests.Session, "request", counted)
        outcomes = prepare(files)
    assert len(attempts) == 1, "offline, each further file would cost another timeout"
    assert outcomes[0].state == "failed" and "no network" in outcomes[0].message
    assert [o.state for o in outcomes[1:]] == ["not tried"] * (len(files) - 1)
    assert all(not o.ok for o in outcomes) and not any(f.path.exists() for f in files)


def test_a_bad_file_on_the_server_fails_alone(mirror):
    root, _ = mirror
    shakespeare = class_files()["tinyshakespeare"]
    (root / urlsplit(shakespeare.url).path.lstrip("/")).write_text("not Shakespeare")
    outcomes = prepare(list(class_files().values()))
    assert outcomes[0].state == "failed" and "sha256" in outcomes[0].message
    assert not shakespeare.path.exists()
    assert [o.state for o in outcomes[1:]] == ["downloaded"] * (len(outcomes) - 1), "a bad file is not a network failure"


def test_a_corrupt_copy_on_disk_is_downloaded_again(mirror):
    gpt2 = tiktoken_file("r50k_base")
    gpt2.path.parent.mkdir(parents=True)
    gpt2.path.write_bytes(b"truncated")
    assert gpt2.is_present() and not gpt2.is_verified()
    assert [o.state for o in prepare([gpt2])] == ["downloaded"]
    assert gpt2.is_verified()


def test_a_server_that_never_answers_times_out(silent_server, monkeypatch):
    """A school network that drops packets must not hang a page: the read timeout ends the wait."""
    monkeypatch.setattr(lm.download, "TIMEOUT", (0.5, 0.5))
    file = tiktoken_file("r50k_base")
    silent = dataclasses.replace(file, url=f"{silent_server}/encodings/r50k_base.tiktoken")
    with pytest.raises(NoNetworkError, match="no answer within 0.5 s"):
        fetch(silent)
    assert not silent.path.exists()


def test_cli_download_all_reports_each_file(mirror, capsys):
    assert main(["download", "--all"]) == 0
    out = capsys.readouterr().out
    for file in class_files().values():
        assert f"✓ {file.title}: downloaded · {file.path}" in out
    assert main(["download", "tinyshakespeare"]) == 0
    assert "✓ Tiny Shakespeare: present" in capsys.readouterr().out


def test_cli_download_all_offline_exits_1_and_says_where_the_files_go(no_network, capsys):
    assert main(["download", "--all"]) == 1
    captured = capsys.readouterr()
    assert "✗ Tiny Shakespeare: failed · ConnectionError: no network?" in captured.out
    assert "not tried" in captured.out
    assert f"{len(class_files())} of {len(class_files())} files are missing" in captured.err
    assert all(str(f.path) in captured.err for f in class_files().values())


def test_cli_download_needs_a_name_or_all(capsys):
    with pytest.raises(SystemExit):
        main(["download"])
    with pytest.raises(SystemExit):
        main(["download", "tinyshakespeare", "--all"])
