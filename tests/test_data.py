"""Tests for lm.data: strict text decoding, reading files, and fetching corpora
(from a local HTTP server: these tests never reach the internet)."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import platformdirs
import pytest

from lm.data import (
    CORPORA,
    MAX_TEXT_BYTES,
    DataError,
    NotUTF8Error,
    data_dir,
    decode_text,
    encode_corpus,
    fetch_corpus,
    is_cached,
    load_corpus,
    read_text_file,
)
from tests.offline import serve_folder

SHAKESPEARE = CORPORA["tinyshakespeare"]


@pytest.fixture(autouse=True)
def fresh_data_dir(tmp_path, monkeypatch) -> Path:
    """Each test caches corpora in its own empty folder."""
    monkeypatch.setenv("LM_DATA_DIR", str(tmp_path / "lm-data"))
    return data_dir()


# --- decode_text -----------------------------------------------------------------


def test_decode_utf8():
    text = "Hello, wörld — ✓ 日本 🦙\r\n"
    assert decode_text(text.encode("utf-8")) == text


def test_decode_drops_utf8_bom():
    assert decode_text(b"\xef\xbb\xbfHello") == "Hello"


@pytest.mark.parametrize(
    "text, encoding",
    [
        ("café au lait, naïve", "cp1252"),
        ("café au lait, naïve", "latin-1"),
        ("“smart quotes” cost €5 – ok", "cp1252"),
        ("Ångström ÿ ¤ ½", "latin-1"),
    ],
)
def test_non_utf8_is_refused_then_decoded_with_its_encoding(text, encoding):
    data = text.encode(encoding)
    first_bad = next(i for i, ch in enumerate(text) if ord(ch) > 127)
    with pytest.raises(NotUTF8Error, match=rf"byte 0x{data[first_bad]:02X} at position {first_bad} "):
        decode_text(data)
    assert decode_text(data, encoding=encoding) == text


def test_bad_byte_position_is_exact_in_long_text():
    data = b"a" * 12_345 + b"\xff" + b"b" * 10
    with pytest.raises(NotUTF8Error, match=r"0xFF at position 12,345 \(after 'a+'\)"):
        decode_text(data)


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_with_bom_is_refused_then_decoded(codec):
    text = "Hello wörld 🦙"
    data = ("\ufeff" + text).encode(codec)
    with pytest.raises(NotUTF8Error, match="UTF-16"):
        decode_text(data)
    assert decode_text(data, encoding="utf-16") == text


@pytest.mark.parametrize(
    "data, encoding",
    [
        (b"abc\x00def", None),
        ("no BOM here".encode("utf-16-le"), None),
        (b"abc\x00def", "latin-1"),
        (b"abc\x00def", "cp1252"),
    ],
)
def test_nul_bytes_are_refused(data, encoding):
    with pytest.raises(DataError, match="NUL"):
        decode_text(data, encoding=encoding)


@pytest.mark.parametrize("data", [b"", b"   ", b" \n\t\r\n ", "\u00a0\u3000\n".encode(), b"\xef\xbb\xbf"])
def test_empty_or_blank_text_is_refused(data):
    with pytest.raises(DataError, match="the text is empty"):
        decode_text(data)


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252", "latin-1", "utf-16"])
def test_blank_text_is_refused_in_any_encoding(encoding):
    with pytest.raises(DataError, match="the text is empty"):
        decode_text(" \n\t ".encode(encoding), encoding=encoding)


def test_text_over_the_default_limit_is_refused():
    with pytest.raises(DataError, match=r"the text is 52\.4 MB; the limit is"):
        decode_text(b"a" * (MAX_TEXT_BYTES + 1))


def test_max_bytes_is_the_exact_limit():
    assert decode_text(b"a" * 1_000, max_bytes=1_000) == "a" * 1_000
    with pytest.raises(DataError, match="the limit is"):
        decode_text(b"a" * 1_001, max_bytes=1_000)


@pytest.mark.parametrize("encoding", ["ascii", "UTF8", "shift_jis", ""])
def test_unknown_encoding_is_refused(encoding):
    with pytest.raises(DataError, match=f"unsupported encoding {encoding!r}; choose one of utf-8, cp1252"):
        decode_text(b"hello", encoding=encoding)


@pytest.mark.parametrize("data, encoding", [(b"caf\xe9", "utf-8"), (b"bad \x81 byte", "cp1252"), (b"\xff\xfe\x00", "utf-16")])
def test_bytes_invalid_in_the_chosen_encoding_are_refused(data, encoding):
    with pytest.raises(DataError, match=f"not valid {encoding} either"):
        decode_text(data, encoding=encoding)


# --- read_text_file ----------------------------------------------------------------


def test_read_text_file_on_shakespeare(shakespeare_path, shakespeare_text):
    text = read_text_file(shakespeare_path)
    assert text == shakespeare_text
    assert len(text) == 1_115_394
    assert text.startswith("First Citizen:")


def test_read_text_file_with_an_encoding(tmp_path):
    path = tmp_path / "old.txt"
    path.write_bytes("Ça coûte 5 €".encode("cp1252"))
    with pytest.raises(NotUTF8Error):
        read_text_file(path)
    assert read_text_file(str(path), encoding="cp1252") == "Ça coûte 5 €"


@pytest.mark.parametrize("name, message", [("missing.txt", "no such file"), (".", "is a folder, not a text file")])
def test_read_text_file_needs_a_file(tmp_path, name, message):
    with pytest.raises(DataError, match=message):
        read_text_file(tmp_path / name)


def test_read_text_file_refuses_a_huge_file(tmp_path):
    path = tmp_path / "huge.txt"
    with path.open("wb") as f:
        f.truncate(MAX_TEXT_BYTES + 1)  # sparse: nothing is written or read
    with pytest.raises(DataError, match=r"huge\.txt is 52\.4 MB; the limit is"):
        read_text_file(path)


# --- data_dir ------------------------------------------------------------------------


def test_data_dir_follows_lm_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LM_DATA_DIR", str(tmp_path / "elsewhere"))
    assert data_dir() == tmp_path / "elsewhere" / "corpora"


@pytest.mark.parametrize("value", [None, ""])
def test_data_dir_defaults_to_the_user_cache(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("LM_DATA_DIR")
    else:
        monkeypatch.setenv("LM_DATA_DIR", value)
    assert data_dir() == Path(platformdirs.user_cache_dir("llm-explorer")) / "corpora"


# --- fetch_corpus against a local server --------------------------------------------


@dataclasses.dataclass
class LocalServer:
    root: Path
    base_url: str
    requests: list[str]


@pytest.fixture
def local_server(tmp_path, monkeypatch, shakespeare_path):
    """An HTTP server on 127.0.0.1 serving a folder that holds input.txt (Tiny Shakespeare)."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    shutil.copyfile(shakespeare_path, root / "input.txt")
    with serve_folder(root) as (port, seen):
        yield LocalServer(root, f"http://127.0.0.1:{port}", seen)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def corpus_at(url: str, **changes):
    """Tiny Shakespeare as registered, but downloaded from `url`."""
    return dataclasses.replace(SHAKESPEARE, name="local-shakespeare", url=url, **changes)


def test_fetch_downloads_verifies_and_caches(local_server, shakespeare_path, fresh_data_dir):
    corpus = corpus_at(f"{local_server.base_url}/input.txt")
    size = shakespeare_path.stat().st_size
    calls: list[tuple[int, int]] = []

    path = fetch_corpus(corpus, progress=lambda done, total: calls.append((done, total)))

    assert path == fresh_data_dir / SHAKESPEARE.filename
    assert path.read_bytes() == shakespeare_path.read_bytes()
    assert is_cached(corpus)
    assert local_server.requests == ["/input.txt"]
    assert calls[-1] == (size, size)
    assert all(total == size and 0 <= done <= size for done, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)

    again = fetch_corpus(corpus, progress=lambda done, total: calls.append((done, total)))
    assert again == path
    assert local_server.requests == ["/input.txt"], "the cached copy was downloaded again"


def test_fetch_replaces_a_corrupt_cached_copy(local_server, shakespeare_path, fresh_data_dir):
    fresh_data_dir.mkdir(parents=True)
    (fresh_data_dir / SHAKESPEARE.filename).write_text("not Shakespeare")
    path = fetch_corpus(corpus_at(f"{local_server.base_url}/input.txt"))
    assert path.read_bytes() == shakespeare_path.read_bytes()
    assert len(local_server.requests) == 1


def test_fetch_with_wrong_sha256_is_refused(local_server, fresh_data_dir):
    corpus = corpus_at(f"{local_server.base_url}/input.txt", sha256="0" * 64)
    with pytest.raises(DataError, match="sha256"):
        fetch_corpus(corpus)
    assert not is_cached(corpus)
    assert not fresh_data_dir.exists() or not any(fresh_data_dir.iterdir()), "a partial download was left behind"


def test_fetch_from_an_unreachable_server_says_what_to_do(fresh_data_dir):
    corpus = corpus_at(f"http://127.0.0.1:{closed_port()}/input.txt")
    with pytest.raises(DataError, match="Could not download Tiny Shakespeare") as info:
        fetch_corpus(corpus)
    message = str(info.value)
    assert "upload it instead" in message
    assert str(fresh_data_dir / SHAKESPEARE.filename) in message
    assert not is_cached(corpus)


def test_fetch_of_a_missing_url_says_the_server_has_no_such_file(local_server):
    with pytest.raises(DataError, match="answered 404.*upload it instead"):
        fetch_corpus(corpus_at(f"{local_server.base_url}/nothing-here.txt"))


def test_fetch_of_an_unknown_corpus_name_lists_the_known_ones():
    with pytest.raises(DataError, match="unknown corpus 'nope'; known: tinyshakespeare"):
        fetch_corpus("nope")


# --- load_corpus --------------------------------------------------------------------


def test_load_corpus_uses_the_cached_copy_offline(fresh_data_dir, shakespeare_path, shakespeare_text, no_network):
    fresh_data_dir.mkdir(parents=True)
    shutil.copyfile(shakespeare_path, fresh_data_dir / SHAKESPEARE.filename)
    assert is_cached(SHAKESPEARE)
    assert load_corpus("tinyshakespeare") == shakespeare_text


def test_load_corpus_offline_without_a_cache_says_what_to_do(fresh_data_dir, no_network):
    with pytest.raises(DataError, match="upload it instead") as info:
        load_corpus("tinyshakespeare")
    assert str(fresh_data_dir / SHAKESPEARE.filename) in str(info.value)
    assert not is_cached(SHAKESPEARE)


# --- the token cache ------------------------------------------------------------------


class ByteTokenizer:
    """One token per UTF-8 byte: quick, so two runs reach the cache write together."""

    encoding_name = "bytes-for-a-test"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


def encode_as_a_run(text: str, start, results) -> None:
    start.wait()  # both runs begin at once
    try:
        results.put(encode_corpus(text, ByteTokenizer()).tobytes())
    except Exception as exc:
        results.put(repr(exc))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="starts the runs by forking")
@pytest.mark.slow
def test_runs_starting_together_on_one_corpus_share_its_token_cache(tmp_path, monkeypatch):
    """Two runs on the same text and tokenizer, started at the same moment, thirty times over
    with an empty cache: each gets the whole token array, and only the cache entry is left
    (no temporary file, no lock). One shared temporary name failed about one round in ten."""
    text = "To be, or not to be: that is the question. " * 1000
    expected = np.frombuffer(text.encode(), np.uint8).astype(np.uint16).tobytes()
    processes = multiprocessing.get_context("fork")
    for round in range(30):
        monkeypatch.setenv("LM_DATA_DIR", str(tmp_path / str(round)))
        start, results = processes.Barrier(2), processes.Queue()
        runs = [processes.Process(target=encode_as_a_run, args=(text, start, results)) for _ in range(2)]
        for run in runs:
            run.start()
        outcomes = [results.get(timeout=60) for _ in runs]
        for run in runs:
            run.join()
        assert outcomes == [expected, expected], f"round {round}: {[o for o in outcomes if o != expected][0]}"
        assert [p.suffix for p in (data_dir() / "tokens").iterdir()] == [".npy"]
