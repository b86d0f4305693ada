"""Text corpora: a registry of downloadable ones (fetched, verified, cached) and
user-supplied text (a file, an upload, a paste), decoded strictly so nothing is
silently mangled; and the token datasets training draws its batches from."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lm.atomic import atomic_path, exclusive
from lm.download import DownloadError, Progress, RemoteFile, cache_root, fetch

MAX_TEXT_BYTES = 50 * 1024 * 1024
TEXT_ENCODINGS = ("utf-8", "cp1252", "latin-1", "utf-16")


class DataError(ValueError):
    """Text or a corpus that cannot be used; the message says why and what to do."""


class NotUTF8Error(DataError):
    """The bytes are not UTF-8; the caller may retry with one of TEXT_ENCODINGS."""


@dataclass(frozen=True)
class Corpus:
    name: str
    title: str
    description: str
    url: str
    sha256: str
    filename: str
    size: int  # bytes

    @property
    def file(self) -> RemoteFile:
        return RemoteFile(self.name, self.title, self.url, self.sha256, self.size, data_dir, self.filename,
                          instead="upload it instead (the Train and Tokenizer pages read a text file)")


CORPORA = {
    "tinyshakespeare": Corpus(
        name="tinyshakespeare",
        title="Tiny Shakespeare",
        description="40,000 lines from Shakespeare's plays (1.1 MB), the classic char-rnn and nanoGPT corpus.",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        filename="tinyshakespeare.txt",
        size=1_115_394,
    ),
}


def data_dir() -> Path:
    """Where downloaded corpora are cached: $LM_DATA_DIR, else the user's cache folder."""
    return cache_root() / "corpora"


def is_cached(corpus: Corpus) -> bool:
    return corpus.file.is_present()


def fetch_corpus(corpus: Corpus | str, progress: Progress | bool = False) -> Path:
    """Download a registered corpus once (or reuse the cached copy) and verify its sha256.

    `progress` is True for a terminal progress bar, or a callback (done, total) in bytes."""
    if isinstance(corpus, str):
        if corpus not in CORPORA:
            raise DataError(f"unknown corpus {corpus!r}; known: {', '.join(CORPORA)}")
        corpus = CORPORA[corpus]
    try:
        return fetch(corpus.file, progress)
    except DownloadError as exc:
        raise DataError(str(exc)) from exc


def load_corpus(corpus: Corpus | str, progress: Progress | bool = False) -> str:
    return decode_text(fetch_corpus(corpus, progress).read_bytes())


def read_text_file(path: str | os.PathLike, encoding: str | None = None) -> str:
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a text file: name a file in it")
    if not path.exists():
        raise DataError(f"no such file: {path}")
    if not path.is_file():  # /dev/zero, a pipe: no size to check, and it may never end
        raise DataError(f"{path} is not a regular file (a device or a pipe?): name a text file")
    if path.stat().st_size > MAX_TEXT_BYTES:
        raise DataError(f"{path.name} is {human_size(path.stat().st_size)}; the limit is {human_size(MAX_TEXT_BYTES)}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"could not read {path}: {exc.strerror or exc}") from None
    return decode_text(data, encoding)


def human_size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def decode_text(data: bytes, encoding: str | None = None, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """Bytes to text, refusing what would train on garbage.

    UTF-8 (a BOM is dropped) unless `encoding` is given; anything else raises
    NotUTF8Error pointing at the first bad byte, so the user can choose an
    encoding rather than have one guessed."""
    if len(data) > max_bytes:
        raise DataError(f"the text is {human_size(len(data))}; the limit is {human_size(max_bytes)}")
    if encoding is None:
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise NotUTF8Error("the file is UTF-16 (it starts with a UTF-16 byte-order mark); choose UTF-16 to read it")
        if b"\x00" in data:
            raise DataError("the file contains NUL bytes: it looks like a binary file, not text")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            context = data[max(0, exc.start - 20) : exc.start].decode("utf-8", errors="replace")
            raise NotUTF8Error(
                f"the text is not UTF-8: byte 0x{data[exc.start]:02X} at position {exc.start:,} "
                f"(after {context!r}) is invalid. Choose its encoding (for example cp1252 or latin-1) "
                f"or save it as UTF-8."
            ) from None
    else:
        if encoding not in TEXT_ENCODINGS:
            raise DataError(f"unsupported encoding {encoding!r}; choose one of {', '.join(TEXT_ENCODINGS)}")
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise DataError(f"the text is not valid {encoding} either (byte {exc.start:,}): {exc.reason}") from None
        if "\x00" in text:
            raise DataError("the text contains NUL characters: it looks like a binary file, not text")
    if not text.strip():
        raise DataError("the text is empty")
    return text


# --- token datasets ---------------------------------------------------------------


def tokenizer_fingerprint(tokenizer) -> str:
    """Identifies a tokenizer's exact vocabulary, to key the encoded-corpus cache."""
    if hasattr(tokenizer, "to_dict"):
        return hashlib.sha256(json.dumps(tokenizer.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
    return tokenizer.encoding_name


def encode_corpus(text: str, tokenizer) -> np.ndarray:
    """The whole text as token ids, encoded once and cached under data_dir()/tokens. Runs
    that start together on the same text and tokenizer encode it once: the others wait
    for the cache entry."""
    key = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16] + "-" + tokenizer_fingerprint(tokenizer)
    path = data_dir() / "tokens" / f"{key}.npy"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(path):
            if not path.is_file():
                dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
                ids = np.asarray(tokenizer.encode(text), dtype=dtype)
                with atomic_path(path) as tmp, open(tmp, "wb") as f:
                    np.save(f, ids)
                return ids
    return np.load(path, allow_pickle=False)


def split_tokens(ids: np.ndarray, val_fraction: float, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The first part to train on, the last to validate on; each must hold a window."""
    n_val = int(len(ids) * val_fraction)
    train, val = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
    for name, part in (("training", train), ("validation", val)):
        if len(part) <= block_size:
            raise DataError(
                f"the {name} part of the text has {len(part):,} tokens, not more than the context of "
                f"{block_size}: use a longer text or a shorter context"
            )
    return train, val


def random_batch(
    ids: np.ndarray, batch_size: int, block_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` random windows: inputs, and the same windows shifted by one as targets."""
    starts = torch.randint(len(ids) - block_size, (batch_size,), generator=generator).tolist()
    windows = torch.from_numpy(np.stack([ids[s : s + block_size + 1].astype(np.int64) for s in starts]))
    return windows[:, :-1], windows[:, 1:]
