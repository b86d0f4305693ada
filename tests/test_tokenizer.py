"""Tests for lm.tokenizer and lm.bpe: the own byte-level BPE (training, encoding, saving) and
OpenAI's encodings through tiktoken, all offline."""

from __future__ import annotations

import json
import shutil
from functools import lru_cache
from pathlib import Path

import pytest
import regex
import requests
import tiktoken
import tiktoken.registry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lm.bpe import Merge, train_merges_reference
from lm.tokenizer import (
    ENDOFTEXT,
    MAX_TOKENIZER_BYTES,
    MAX_VOCAB_SIZE,
    SPLIT_PATTERNS,
    BPETokenizer,
    TiktokenTokenizer,
    TokenizerError,
    TokenizerMissing,
    load_tokenizer,
    tiktoken_file,
)
from tests.conftest import SHARED_DATA

PATTERNS = list(SPLIT_PATTERNS)  # "gpt4", "gpt2", "none"
TIKTOKEN_NAMES = ["r50k_base", "cl100k_base", "o200k_base"]

# Texts chosen to stress pre-splitting and byte fallback; tests add Shakespeare
# slices from the shared file (most of them far beyond any training slice).
VARIED_TEXTS = {
    "empty": "",
    "code": 'def f(x):\n    return {"a": x**2}  # square\n\tif a != b:\r\n\t\tpass\n',
    "emoji": "Hi 👋🏽! 🌍🇫🇷 family: 👨\u200d👩\u200d👧\u200d👦 🦙🦙",
    "cjk": "日本語のテキスト、中文文本。한국어 텍스트 ｶﾀｶﾅ",
    "whitespace": "a  b   c\n\n\n   \t\t x \r\n\r\n    \u00a0\u3000 end   ",
    "digits": "1234567890 3.14159 1,000,000 2024-01-01 0x1F 007 ١٢٣",
    "contractions": "I'm, you're, we'll, they've, he'd, DON'T, O'Brien's",
    "accents": "naïve café Zürich crème brûlée Ελληνικά русский",
    "specials": f"one{ENDOFTEXT}two{ENDOFTEXT}{ENDOFTEXT} <|endoftext| |endoftext|>",
}

NO_DEADLINE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def trained(shakespeare_text):
    """trained(pattern, n_chars, vocab_size, special_tokens): a BPE trained on the first
    `n_chars` of Tiny Shakespeare, memoized for the module (tests must not mutate it)."""

    @lru_cache(maxsize=None)
    def train(pattern="gpt4", n_chars=50_000, vocab_size=512, special_tokens=(ENDOFTEXT,)):
        return BPETokenizer.train(shakespeare_text[:n_chars], vocab_size, pattern=pattern, special_tokens=special_tokens)

    return train


def shakespeare_slices(text: str, size: int = 3_000) -> list[str]:
    return [text[start : start + size] for start in (0, 300_000, 700_000, len(text) - size)]


def texts_with_specials() -> st.SearchStrategy[str]:
    """Random pieces of text (possibly empty) joined by <|endoftext|>."""
    return st.lists(st.text(max_size=40), min_size=2, max_size=6).map(ENDOFTEXT.join)


def assert_contiguous_ids(tok: BPETokenizer) -> None:
    assert [m.id for m in tok.merges] == list(range(256, 256 + len(tok.merges)))
    assert sorted(tok.special_tokens.values()) == list(range(256 + len(tok.merges), tok.vocab_size))
    for token_id in range(tok.vocab_size):
        tok.token_bytes(token_id)  # every id in range is a token
    with pytest.raises(TokenizerError):
        tok.token_bytes(tok.vocab_size)


# --- round trips and the fast path against the reference -----------------------


@pytest.mark.parametrize("pattern", PATTERNS)
@NO_DEADLINE
@given(text=st.text())
def test_decode_inverts_encode_on_any_unicode(pattern, text, trained):
    tok = trained(pattern)
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("pattern", PATTERNS)
@NO_DEADLINE
@given(text=texts_with_specials())
def test_special_tokens_survive_round_trip(pattern, text, trained):
    tok = trained(pattern)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids.count(tok.special_tokens[ENDOFTEXT]) == text.count(ENDOFTEXT)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_special_token_is_one_id_after_the_merges(pattern, trained):
    tok = trained(pattern)
    special_id = 256 + len(tok.merges)
    assert tok.special_tokens == {ENDOFTEXT: special_id}
    assert tok.encode(f"a{ENDOFTEXT}b") == tok.encode("a") + [special_id] + tok.encode("b")
    assert tok.token_bytes(special_id) == ENDOFTEXT.encode()


@pytest.mark.parametrize(
    "special_tokens",
    [(ENDOFTEXT, ENDOFTEXT + "2"), ("<|a|>", "<|a|>b"), ("<|a|>b", "<|a|>"), ("<|pad|>", "<|pad|>>", "<|")],
    ids=["endoftext-endoftext2", "short-first", "long-first", "three"],
)
def test_special_tokens_that_start_with_another_are_refused(special_tokens, shakespeare_text):
    """tiktoken does not reliably prefer the longer of two such tokens, so they are refused."""
    with pytest.raises(TokenizerError, match="starts with another special token"):
        BPETokenizer.train(shakespeare_text[:5_000], 300, special_tokens=special_tokens)


def test_special_token_text_in_the_corpus_is_not_learned_from(shakespeare_text):
    text = (shakespeare_text[:3_000] + ENDOFTEXT) * 20
    tok = BPETokenizer.train(text, 400)
    assert not any(b"endoftext" in token or b"<|" in token for token in tok.vocab)
    assert tok.encode(ENDOFTEXT) == [tok.special_tokens[ENDOFTEXT]]


@pytest.mark.parametrize("pattern", PATTERNS)
@NO_DEADLINE
@given(text=st.one_of(st.text(), texts_with_specials()))
def test_encode_matches_reference_on_random_text(pattern, text, trained):
    tok = trained(pattern)
    assert tok.encode(text) == tok.encode_reference(text)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_encode_matches_reference_on_varied_text(pattern, shakespeare_text, trained):
    tok = trained(pattern)
    for text in [*VARIED_TEXTS.values(), *shakespeare_slices(shakespeare_text)]:
        assert tok.encode(text) == tok.encode_reference(text), text[:60]


def test_encode_compresses_seen_text(shakespeare_text, trained):
    tok = trained("gpt4")
    text = shakespeare_text[:5_000]
    ids = tok.encode(text)
    assert len(ids) < len(text.encode()) / 2
    assert b"".join(tok.token_bytes(i) for i in ids) == text.encode()


# --- training -------------------------------------------------------------------


@pytest.mark.parametrize("pattern", PATTERNS)
def test_training_is_deterministic(pattern, shakespeare_text):
    text = shakespeare_text[:30_000]
    first = BPETokenizer.train(text, 400, pattern=pattern)
    second = BPETokenizer.train(text, 400, pattern=pattern)
    assert first.merges == second.merges
    assert first.vocab == second.vocab


@pytest.mark.parametrize("vocab_size", [257, 300, 512, 1000])
def test_training_reaches_the_asked_vocab_size(vocab_size, trained):
    tok = trained("gpt4", 100_000, vocab_size)
    assert tok.vocab_size == vocab_size
    assert len(tok.merges) == vocab_size - 256 - 1  # the special token counts
    assert_contiguous_ids(tok)


@pytest.mark.parametrize("special_tokens", [(), (ENDOFTEXT,), (ENDOFTEXT, "<|pad|>", "<|user|>")])
def test_special_tokens_count_in_vocab_size(special_tokens, trained):
    tok = trained("gpt2", 20_000, 300, special_tokens)
    assert tok.vocab_size == 300
    assert list(tok.special_tokens) == list(special_tokens)
    assert_contiguous_ids(tok)


def test_duplicate_special_tokens_count_once(trained):
    tok = trained("gpt4", 20_000, 300, (ENDOFTEXT, ENDOFTEXT))
    assert tok.special_tokens == {ENDOFTEXT: 299}
    assert tok.vocab_size == 300


def test_training_reports_progress_to_the_end(shakespeare_text):
    calls = []
    BPETokenizer.train(shakespeare_text[:20_000], 300, progress=lambda done, total: calls.append((done, total)))
    num_merges = 300 - 256 - 1
    assert calls, "progress was never reported"
    assert calls[-1] == (num_merges, num_merges)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("ab \n"), min_size=1, max_size=300)
    | st.text(alphabet=st.sampled_from("aAé1'\t "), min_size=1, max_size=300),
    pattern=st.sampled_from(PATTERNS),
    vocab_size=st.integers(257, 400),
)
def test_training_on_small_alphabets_gives_a_sound_vocab(text, pattern, vocab_size):
    tok = BPETokenizer.train(text, vocab_size, pattern=pattern)
    assert len(set(tok.vocab)) == len(tok.vocab)
    assert tok.vocab_size <= vocab_size
    assert_contiguous_ids(tok)
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode(text) == tok.encode_reference(text)


def reference_merges(text: str, pattern: str, num_merges: int) -> list[Merge]:
    """The reference trainer's merges on the same regex pre-split as BPETokenizer.train."""
    return train_merges_reference(regex.findall(SPLIT_PATTERNS[pattern], text), num_merges)


def test_reference_trainer_on_the_textbook_example():
    """Wikipedia's "aaabdaaabac": aa first (4 overlapping pairs), then a tie at 2 between
    (a, b) and (aa, a) that goes to the smaller pair, then aa + ab."""
    a, b, c = 97, 98, 99
    merges = train_merges_reference(["aaabdaaabac"], 4)
    assert merges == [Merge((a, a), 256, 4), Merge((a, b), 257, 2), Merge((256, 257), 258, 2), Merge((a, c), 259, 1)]
    assert train_merges_reference(["aaabdaaabac"], 2) == merges[:2]
    assert train_merges_reference(["ab", "ba", "a"], 9) == [Merge((a, b), 256, 1), Merge((b, a), 257, 1)]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.slow
def test_merges_match_the_reference_trainer_on_shakespeare(pattern, shakespeare_text):
    text = shakespeare_text[:20_000]
    num_merges = 150
    tok = BPETokenizer.train(text, 256 + num_merges, pattern=pattern, special_tokens=())
    assert tok.merges == reference_merges(text, pattern, num_merges)  # pairs, ids and counts


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("abc \n"), min_size=1, max_size=200),
    pattern=st.sampled_from(PATTERNS),
    num_merges=st.integers(0, 80),
)
def test_merges_match_the_reference_trainer_on_random_text(text, pattern, num_merges):
    tok = BPETokenizer.train(text, 256 + num_merges, pattern=pattern, special_tokens=())
    assert tok.merges == reference_merges(text, pattern, num_merges)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_short_text_gives_a_smaller_vocab(pattern):
    text = "to be or not to be\n"
    tok = BPETokenizer.train(text, 1000, pattern=pattern)
    assert 257 < tok.vocab_size < 1000
    assert tok.vocab_size == 256 + len(tok.merges) + 1
    assert_contiguous_ids(tok)
    # Training stopped because every chunk became a single token.
    assert len(tok.encode(text)) == len(regex.findall(SPLIT_PATTERNS[pattern], text))


@pytest.mark.parametrize("vocab_size", [100, 256, MAX_VOCAB_SIZE + 1, 10**6])
def test_impossible_vocab_size_is_refused(vocab_size):
    with pytest.raises(TokenizerError, match=f"vocab_size must be between 257 .* got {vocab_size}"):
        BPETokenizer.train("some text", vocab_size)


def test_empty_text_is_refused():
    with pytest.raises(TokenizerError, match="empty text"):
        BPETokenizer.train("", 300)


@pytest.mark.parametrize("token_id", [-1, 300, 10**9])
def test_bpe_token_bytes_out_of_range(token_id, trained):
    tok = trained("gpt4", 20_000, 300)
    with pytest.raises(TokenizerError, match="outside this vocabulary of 300"):
        tok.token_bytes(token_id)


def test_bpe_partial_utf8_token(trained):
    tok = trained("gpt4", 20_000, 300)  # Shakespeare has no emoji: it falls back to bytes
    ids = tok.encode("🦙")
    assert [tok.token_bytes(i) for i in ids] == [bytes([b]) for b in "🦙".encode()]
    assert tok.decode(ids[:1]) == "\ufffd"  # replaced, not raised
    assert tok.decode(ids) == "🦙"


# --- saving and loading ---------------------------------------------------------


@pytest.mark.parametrize("pattern", [*PATTERNS, r"\S+|\s+"])
def test_save_load_round_trip(pattern, tmp_path, shakespeare_text):
    original = BPETokenizer.train(
        shakespeare_text[:20_000], 350, pattern=pattern, special_tokens=(ENDOFTEXT, "<|x|>"), name="mine"
    )
    path = tmp_path / "tokenizer.json"
    original.save(path)
    loaded = load_tokenizer(path)

    assert isinstance(loaded, BPETokenizer)
    assert loaded.merges == original.merges
    assert loaded.pattern == original.pattern
    assert loaded.pattern_name == original.pattern_name == (pattern if pattern in PATTERNS else "custom")
    assert loaded.special_tokens == original.special_tokens
    assert loaded.name == "mine"
    assert loaded.vocab_size == original.vocab_size == 350
    for text in [*VARIED_TEXTS.values(), *shakespeare_slices(shakespeare_text)]:
        assert loaded.encode(text) == original.encode(text)
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"], "the atomic write left a temporary file"


def test_saved_file_is_plain_json(tmp_path, trained):
    tok = trained("gpt2", 20_000, 300)
    tok.save(tmp_path / "t.json")
    data = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert data["format"] == "llm-explorer/bpe-tokenizer"
    assert data["version"] == 1
    assert data["merges"][0] == [*tok.merges[0].pair, 256, tok.merges[0].count]


def valid_tokenizer_dict() -> dict:
    return BPETokenizer([Merge((97, 98), 256, 5)]).to_dict()


def with_changes(**changes) -> dict:
    return {**valid_tokenizer_dict(), **changes}


HF_TOKENIZER_JSON = {
    "version": "1.0",
    "truncation": None,
    "added_tokens": [],
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
}


def merges_with(*rows) -> list[list[int]]:
    """The valid merge (a, b) -> 256, then the given rows."""
    return [*valid_tokenizer_dict()["merges"], *rows]


@pytest.mark.parametrize(
    "content, message",
    [
        pytest.param(b'{"format": "llm-explorer', "not valid JSON", id="truncated-json"),
        pytest.param(b"\xff\xfe\x00\x81garbage", "not valid JSON", id="not-utf8"),
        pytest.param(b"", "not valid JSON", id="empty-file"),
        pytest.param(b"[1, 2, 3]", "expected a JSON object", id="json-list"),
        pytest.param(b'"a string"', "expected a JSON object", id="json-string"),
        pytest.param(HF_TOKENIZER_JSON, "not an LLM Explorer BPE tokenizer", id="hf-tokenizer-json"),
        pytest.param(with_changes(version=2), "version 2; this program reads version 1", id="wrong-version"),
        pytest.param(with_changes(version="1"), "version '1'", id="version-as-string"),
        pytest.param(with_changes(merges=[[97, 98, 257, 5]]), "does not follow", id="merge-id-out-of-order"),
        pytest.param(with_changes(merges=merges_with([256, 258, 257, 5])), "does not follow", id="merge-uses-future-id"),
        pytest.param(with_changes(merges=merges_with([-1, 98, 257, 5])), "does not follow", id="merge-uses-negative-id"),
        pytest.param(with_changes(merges=merges_with([97, 98, 257, 5])), "same bytes", id="duplicate-merge"),
        pytest.param(with_changes(merges=[[97, 98]]), "malformed", id="merge-row-too-short"),
        pytest.param(with_changes(merges=[["a", "b", 256, 1]]), "malformed", id="merge-not-numbers"),
        pytest.param(with_changes(merges=None), "malformed", id="merges-null"),
        pytest.param({k: v for k, v in valid_tokenizer_dict().items() if k != "merges"}, "malformed", id="no-merges"),
        pytest.param(with_changes(pattern="(unclosed"), "malformed", id="bad-regex"),
        pytest.param(with_changes(special_tokens=ENDOFTEXT), "special", id="special-tokens-not-a-list"),
        pytest.param({"tiktoken": "p50k_base"}, "unknown tiktoken encoding 'p50k_base'", id="unknown-tiktoken"),
        pytest.param({"tiktoken": ["r50k_base"]}, "tiktoken", id="tiktoken-name-not-a-string"),
    ],
)
def test_load_refuses_bad_files(tmp_path, content, message):
    path = tmp_path / "tokenizer.json"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    with pytest.raises(TokenizerError, match=regex.escape(message)):
        load_tokenizer(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer file at .*nope.json"):
        load_tokenizer(tmp_path / "nope.json")


# --- OpenAI's encodings through tiktoken ----------------------------------------

KNOWN_IDS = {  # (vocab size, "Hello world", "<|endoftext|>")
    "r50k_base": (50257, [15496, 995], [50256]),
    "cl100k_base": (100277, [9906, 1917], [100257]),
    "o200k_base": (200019, [13225, 2375], [199999]),
}


@pytest.fixture(scope="module", params=TIKTOKEN_NAMES)
def openai_tok(request) -> TiktokenTokenizer:
    return TiktokenTokenizer(request.param)


def test_tiktoken_known_ids(openai_tok):
    vocab_size, hello, endoftext = KNOWN_IDS[openai_tok.encoding_name]
    assert openai_tok.vocab_size == vocab_size
    assert openai_tok.encode("Hello world") == hello
    assert openai_tok.encode(ENDOFTEXT) == endoftext


def test_tiktoken_matches_tiktoken(openai_tok, shakespeare_text):
    reference = tiktoken.get_encoding(openai_tok.encoding_name)
    for text in [*VARIED_TEXTS.values(), *shakespeare_slices(shakespeare_text)]:
        ids = openai_tok.encode(text)
        assert ids == reference.encode(text, allowed_special="all")
        assert openai_tok.decode(ids) == text
        assert b"".join(openai_tok.token_bytes(i) for i in ids) == text.encode()


def test_tiktoken_partial_utf8_token(openai_tok):
    ids = openai_tok.encode("🦙")
    pieces = [openai_tok.token_bytes(i) for i in ids]
    assert b"".join(pieces) == "🦙".encode()
    assert len(pieces) > 1
    partial = pieces[0]
    with pytest.raises(UnicodeDecodeError):
        partial.decode("utf-8")
    assert openai_tok.decode(ids[:1]) == "\ufffd"  # replaced, not raised


@pytest.mark.parametrize("token_id", [-1, "vocab_size", 2**32])
def test_tiktoken_token_bytes_out_of_range(openai_tok, token_id):
    token_id = openai_tok.vocab_size if token_id == "vocab_size" else token_id
    with pytest.raises(TokenizerError, match="not in .*vocabulary"):
        openai_tok.token_bytes(token_id)


def test_tiktoken_id_in_a_gap_of_the_vocab():
    tok = TiktokenTokenizer("cl100k_base")  # ranks end at 100255; specials start at 100257
    with pytest.raises(TokenizerError, match="not in GPT-4's vocabulary"):
        tok.token_bytes(100256)


def test_tiktoken_save_load(openai_tok, tmp_path):
    path = tmp_path / "tokenizer.json"
    openai_tok.save(path)
    assert json.loads(path.read_text(encoding="utf-8")) == {"tiktoken": openai_tok.encoding_name}
    loaded = load_tokenizer(path)
    assert isinstance(loaded, TiktokenTokenizer)
    assert loaded.encoding_name == openai_tok.encoding_name
    assert loaded.name == openai_tok.name
    assert loaded.encode(VARIED_TEXTS["emoji"]) == openai_tok.encode(VARIED_TEXTS["emoji"])


@pytest.mark.parametrize("name", ["gpt2", "p50k_base", "", "cl100k"])
def test_tiktoken_unknown_encoding(name):
    with pytest.raises(TokenizerError, match="unknown tiktoken encoding"):
        TiktokenTokenizer(name)


@pytest.mark.parametrize("name", TIKTOKEN_NAMES)
def test_tiktoken_offline_with_empty_cache(name, tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # forget encodings loaded earlier
    with pytest.raises(TokenizerError, match=rf"Could not download .*\({name}\).*no network.*download --all") as info:
        TiktokenTokenizer(name)
    assert str(tmp_path / tiktoken_file(name).filename) in str(info.value), "the message says where the file goes"
    assert not any(tmp_path.iterdir()), "a failed download left a file behind"


@pytest.mark.parametrize("name", TIKTOKEN_NAMES)
def test_tiktoken_without_download_fails_at_once_when_the_file_is_missing(name, tmp_path, monkeypatch):
    """The pages ask with download=False: no request at all, and a message that says what to do."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    requested = []
    monkeypatch.setattr(requests.Session, "request", lambda *args, **kwargs: requested.append(args))
    with pytest.raises(TokenizerMissing, match=rf"\({name}\) is not on this machine.*download --all"):
        TiktokenTokenizer(name, download=False)
    assert requested == []


def test_tiktoken_reads_a_rank_file_copied_into_its_cache(tmp_path, monkeypatch):
    """The shared rank files, copied under the names tiktoken_file gives them, load with no network:
    our URLs and hashes are tiktoken's own."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setattr(requests.Session, "request", lambda *args, **kwargs: pytest.fail("tried the network"))
    for name in TIKTOKEN_NAMES:
        shutil.copyfile(SHARED_DATA / "tiktoken" / tiktoken_file(name).filename, tmp_path / tiktoken_file(name).filename)
        assert tiktoken_file(name).is_verified()
        assert TiktokenTokenizer(name, download=False).encode("Hello world") == KNOWN_IDS[name][1]


def test_a_corrupt_rank_file_is_not_handed_to_tiktoken(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    (tmp_path / tiktoken_file("r50k_base").filename).write_bytes(b"not ranks")
    with pytest.raises(TokenizerMissing):
        TiktokenTokenizer("r50k_base", download=False)


@pytest.mark.parametrize("where", ["/dev/zero", "folder", "huge"])
def test_loading_a_tokenizer_from_a_device_a_folder_or_a_huge_file_is_refused_at_once(tmp_path, where):
    """/dev/zero never ends: reading it whole would hang the command and fill the memory."""
    path = Path(where) if where.startswith("/") else tmp_path / where
    if where == "folder":
        path.mkdir()
    elif where == "huge":
        with open(path, "wb") as f:
            f.truncate(MAX_TOKENIZER_BYTES + 1)  # sparse: no disk used
    with pytest.raises(TokenizerError, match="not a tokenizer file|no tokenizer file is that large"):
        load_tokenizer(path)
