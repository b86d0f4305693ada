"""Byte-level BPE: the project's own tokenizer, trained from scratch, and OpenAI's
through tiktoken, behind one small interface.

Every tokenizer here has `name`, `vocab_size`, `encode(text)`, `decode(ids)`,
`token_bytes(id)` and `save(path)`; `load_tokenizer(path)` reads any of them back.

How the own BPE works, in the order the code below does it:

1. Pre-split: a regex cuts the text into chunks (words with their leading space,
   numbers, punctuation runs, whitespace), so no merge ever crosses a chunk edge.
2. Train (lm.bpe): every chunk starts as its UTF-8 bytes (ids 0..255). Count every
   adjacent pair, weighted by how often the chunk occurs; merge the most frequent
   pair into a new token; repeat until the vocabulary is full. Ties go to the pair
   with the smallest (left id, right id), so training is deterministic.
3. Encode: a token's id is its rank. Within a chunk, repeatedly join the adjacent
   pair whose joined bytes have the lowest rank (leftmost first), exactly as
   tiktoken does; `encode` runs tiktoken's Rust on our ranks, `encode_reference`
   is the same algorithm in a dozen lines of Python.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Protocol

import regex
import tiktoken

from lm.atomic import write_json
from lm.bpe import Merge, train_merges
from lm.download import DownloadError, RemoteFile, cache_root, fetch

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT4_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
# "No pre-split" still cuts at line ends: merges may then cross spaces and
# punctuation (the lesson), while training stays fast on long texts.
LINES_PATTERN = r"""[^\n]*\n|[^\n]+"""

SPLIT_PATTERNS = {"gpt4": GPT4_PATTERN, "gpt2": GPT2_PATTERN, "none": LINES_PATTERN}
SPLIT_PATTERN_LABELS = {
    "gpt4": "GPT-4 (cl100k) regex",
    "gpt2": "GPT-2 regex",
    "none": "None: merges may cross words (lines still split)",
}

ENDOFTEXT = "<|endoftext|>"
TIKTOKEN_ENCODINGS = {"r50k_base": "GPT-2", "cl100k_base": "GPT-4", "o200k_base": "GPT-4o"}
TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"  # as tiktoken_ext.openai_public
TIKTOKEN_FILE_HASHES = {  # name: (sha256, bytes)
    "r50k_base": ("306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930", 835_554),
    "cl100k_base": ("223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7", 1_681_126),
    "o200k_base": ("446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d", 3_613_922),
}

FORMAT = "llm-explorer/bpe-tokenizer"
FORMAT_VERSION = 1
MAX_VOCAB_SIZE = 65_536


class TokenizerError(ValueError):
    """A tokenizer that cannot be built, trained or loaded; the message says why."""


class TokenizerMissing(TokenizerError):
    """One of OpenAI's tokenizers whose rank file is not on this machine (and was not to be downloaded)."""


def tiktoken_cache_dir() -> Path:
    """The folder tiktoken reads its rank files from, in tiktoken's own order of variables."""
    return Path(os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") or cache_root() / "tiktoken")


# tiktoken's default cache is the temporary folder, which a reboot may empty; a machine
# prepared for class must keep its files, so unless the user chose a folder, use ours.
os.environ["TIKTOKEN_CACHE_DIR"] = str(tiktoken_cache_dir())


def tiktoken_file(encoding_name: str) -> RemoteFile:
    """An encoding's rank file, named as tiktoken caches it: the sha1 of its URL."""
    url = TIKTOKEN_URL.format(encoding_name)
    sha256, size = TIKTOKEN_FILE_HASHES[encoding_name]
    return RemoteFile(encoding_name, f"{TIKTOKEN_ENCODINGS[encoding_name]}'s tokenizer ({encoding_name})", url, sha256,
                      size, tiktoken_cache_dir, hashlib.sha1(url.encode()).hexdigest())


class Tokenizer(Protocol):
    name: str

    @property
    def vocab_size(self) -> int: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def token_bytes(self, token_id: int) -> bytes: ...
    def save(self, path: str | os.PathLike) -> None: ...


class BPETokenizer:
    """The project's own byte-level BPE; its merges double as a tiktoken rank table."""

    def __init__(
        self,
        merges: list[Merge],
        pattern: str = "gpt4",
        special_tokens: Iterable[str] = (ENDOFTEXT,),
        name: str = "own BPE",
    ):
        self.name = name
        self.merges = list(merges)
        self.pattern = SPLIT_PATTERNS.get(pattern, pattern)
        self.pattern_name = next((k for k, v in SPLIT_PATTERNS.items() if v == self.pattern), "custom")
        self.vocab = [bytes([b]) for b in range(256)]
        for m in self.merges:
            if m.id != len(self.vocab) or not all(0 <= t < m.id for t in m.pair):
                raise TokenizerError(f"merge {m} does not follow the tokens before it")
            self.vocab.append(self.vocab[m.pair[0]] + self.vocab[m.pair[1]])
        self.ranks = {token: i for i, token in enumerate(self.vocab)}
        if len(self.ranks) != len(self.vocab):
            raise TokenizerError("two merges make the same bytes; the merge list is corrupt")
        self.special_tokens = {s: len(self.vocab) + i for i, s in enumerate(_check_specials(special_tokens))}
        self._special_re = _special_regex(self.special_tokens)
        self._pre_split = regex.compile(self.pattern)
        self._encoding = tiktoken.Encoding(
            name=f"llm-explorer-{id(self)}",
            pat_str=self.pattern,
            mergeable_ranks=self.ranks,
            special_tokens=self.special_tokens,
        )

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        pattern: str = "gpt4",
        special_tokens: Iterable[str] = (ENDOFTEXT,),
        progress: Callable[[int, int], None] | None = None,
        name: str = "own BPE",
    ) -> "BPETokenizer":
        """Train on `text` until the vocabulary (256 bytes + merges + special tokens)
        has `vocab_size` entries, or until every chunk is a single token: a short
        text may give a smaller vocabulary, which `vocab_size` then reports."""
        special_tokens = _check_specials(special_tokens)
        num_merges = vocab_size - 256 - len(special_tokens)
        if num_merges < 0 or vocab_size > MAX_VOCAB_SIZE:
            raise TokenizerError(
                f"vocab_size must be between {256 + len(special_tokens)} (256 bytes + "
                f"{len(special_tokens)} special tokens) and {MAX_VOCAB_SIZE}; got {vocab_size}"
            )
        if not text:
            raise TokenizerError("cannot train on empty text")
        compiled = regex.compile(SPLIT_PATTERNS.get(pattern, pattern))
        # Special tokens are never merged into: learn only from the text between them.
        special_re = _special_regex(special_tokens)
        parts = [p for p in special_re.split(text) if p not in special_tokens] if special_re else [text]
        chunk_counts = Counter(chunk for part in parts for chunk in compiled.findall(part))
        chunk_counts = {chunk.encode("utf-8"): n for chunk, n in chunk_counts.items()}
        return cls(train_merges(chunk_counts, num_merges, progress), pattern, special_tokens, name)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab) + len(self.special_tokens)

    def encode(self, text: str) -> list[int]:
        """Fast path: tiktoken's Rust BPE on our ranks. Special tokens in the text are kept whole."""
        return self._encoding.encode(text, allowed_special="all")

    def encode_reference(self, text: str) -> list[int]:
        """The same algorithm in plain Python, to read (and to test the fast path)."""
        parts = self._special_re.split(text) if self._special_re else [text]
        ids: list[int] = []
        for part in parts:
            if part in self.special_tokens:
                ids.append(self.special_tokens[part])
            else:
                for chunk in self._pre_split.findall(part):
                    ids.extend(self._encode_chunk(chunk.encode("utf-8")))
        return ids

    def _encode_chunk(self, chunk: bytes) -> list[int]:
        if chunk in self.ranks:  # a whole chunk that is a token is one token
            return [self.ranks[chunk]]
        parts = [bytes([b]) for b in chunk]
        while len(parts) > 1:
            ranked = [(self.ranks.get(a + b), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, i = min(((r, i) for r, i in ranked if r is not None), default=(None, None))
            if rank is None:
                break
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        return [self.ranks[p] for p in parts]

    def decode(self, ids: Iterable[int]) -> str:
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        if 0 <= token_id < len(self.vocab):
            return self.vocab[token_id]
        for text, special_id in self.special_tokens.items():
            if special_id == token_id:
                return text.encode("utf-8")
        raise TokenizerError(f"token id {token_id} is outside this vocabulary of {self.vocab_size}")

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": self.name,
            "pattern": self.pattern,
            "special_tokens": list(self.special_tokens),
            "merges": [[m.pair[0], m.pair[1], m.id, m.count] for m in self.merges],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "BPETokenizer":
        if data.get("format") != FORMAT:
            raise TokenizerError("not an LLM Explorer BPE tokenizer file (no matching 'format' field)")
        if data.get("version") != FORMAT_VERSION:
            raise TokenizerError(f"tokenizer file version {data.get('version')!r}; this program reads version {FORMAT_VERSION}")
        try:
            merges = [Merge((int(a), int(b)), int(i), int(c)) for a, b, i, c in data["merges"]]
            return cls(merges, data["pattern"], data["special_tokens"], data.get("name", "own BPE"))
        except (KeyError, TypeError, ValueError, regex.error) as exc:
            if isinstance(exc, TokenizerError):
                raise
            raise TokenizerError(f"tokenizer file is malformed: {exc!r}") from exc

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())


class TiktokenTokenizer:
    """One of OpenAI's encodings (GPT-2, GPT-4, GPT-4o), through tiktoken.

    Its rank file is fetched here (with timeouts, hash checked) and only then handed to
    tiktoken, whose own download would wait forever on a network that drops packets.
    With `download=False` a missing file raises TokenizerMissing at once."""

    def __init__(self, encoding_name: str, download: bool = True):
        if not isinstance(encoding_name, str) or encoding_name not in TIKTOKEN_ENCODINGS:
            raise TokenizerError(f"unknown tiktoken encoding {encoding_name!r}; choose one of {', '.join(TIKTOKEN_ENCODINGS)}")
        file = tiktoken_file(encoding_name)
        if not download and not file.is_verified():
            raise TokenizerMissing(
                f"{file.title} is not on this machine: download it with `python -m lm download --all` (or "
                f"Prepare this machine for class on the app's Home page), or copy its rank file to {file.path}."
            )
        try:
            fetch(file)
        except (DownloadError, OSError) as exc:  # the message says what to do instead
            raise TokenizerError(str(exc)) from exc
        try:
            self._encoding = tiktoken.get_encoding(encoding_name)
        except (OSError, ValueError) as exc:
            raise TokenizerError(f"{file.title} cannot be read from {file.path}: {exc}") from exc
        self.encoding_name = encoding_name
        self.name = TIKTOKEN_ENCODINGS[encoding_name]

    @property
    def vocab_size(self) -> int:
        return self._encoding.n_vocab

    def encode(self, text: str) -> list[int]:
        return self._encoding.encode(text, allowed_special="all")

    def decode(self, ids: Iterable[int]) -> str:
        return self._encoding.decode(list(ids), errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        try:
            return self._encoding.decode_single_token_bytes(token_id)
        except (KeyError, OverflowError) as exc:
            raise TokenizerError(f"token id {token_id} is not in {self.name}'s vocabulary") from exc

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, {"tiktoken": self.encoding_name})


MAX_TOKENIZER_BYTES = 64 * 2**20  # a BPE of 200k merges (GPT-4o's size) is about 5 MB as our JSON


def load_tokenizer(path: str | os.PathLike, download: bool = True) -> BPETokenizer | TiktokenTokenizer:
    """Read a tokenizer.json written by either class; anything else gets a clear error.
    `download` is TiktokenTokenizer's, for a file that names one of OpenAI's."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a device like /dev/zero that never ends
        raise TokenizerError(f"{path} is not a tokenizer file (a folder, a device or a pipe?)")
    if path.is_file() and path.stat().st_size > MAX_TOKENIZER_BYTES:
        raise TokenizerError(f"{path.name} is {path.stat().st_size / 2**20:,.0f} MB: no tokenizer file is that large "
                             f"(at most {MAX_TOKENIZER_BYTES // 2**20} MB)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenizerError(f"no tokenizer file at {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TokenizerError(f"{path.name} does not hold a tokenizer (expected a JSON object)")
    if "tiktoken" in data:
        return TiktokenTokenizer(data["tiktoken"], download)
    if data.get("format") == "llm-explorer/hf-tokenizer":  # an imported open-weight model's own (lm.hf_import)
        from lm.hf_tokenizer import HFTokenizer  # here: it imports this module

        return HFTokenizer.from_dict(data)
    return BPETokenizer.from_dict(data)


def _check_specials(special_tokens: Iterable[str]) -> list[str]:
    """Distinct non-empty strings, none the start of another: tiktoken would then
    not reliably pick the longer one, and the reference encoder would disagree."""
    if isinstance(special_tokens, str):
        raise TokenizerError("special_tokens must be a list of strings, not one string")
    specials = list(dict.fromkeys(special_tokens))
    if not all(isinstance(s, str) and s for s in specials):
        raise TokenizerError(f"special tokens must be non-empty strings: {specials!r}")
    for a in specials:
        for b in specials:
            if a != b and b.startswith(a):
                raise TokenizerError(f"special token {b!r} starts with another special token, {a!r}")
    return specials


def _special_regex(special_tokens: Iterable[str]):
    specials = list(special_tokens)
    return regex.compile("(" + "|".join(map(regex.escape, specials)) + ")") if specials else None
