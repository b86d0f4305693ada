"""An open-weight model's own tokenizer (Llama, SmolLM2, Qwen, Pythia ...) from its Hugging
Face `tokenizer.json`, run by Hugging Face `tokenizers`, behind the project's tokenizer
interface (name, vocab_size, encode, decode, token_bytes, save; lm.tokenizer.load_tokenizer
reads it back). Saved as {"format", "name", "chat_template", "tokenizer": <tokenizer.json>}.

token_bytes shows a token's bytes honestly in both vocabularies these models use:
byte-level BPE (GPT-2, SmolLM2, Qwen, Pythia) writes each byte as a printable character,
GPT-2's bytes_to_unicode table; SentencePiece-style BPE (Llama 2, TinyLlama) writes a space
as ▁ and a byte it has no token for as <0xNN>.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer

from lm.atomic import write_json
from lm.tokenizer import TokenizerError

FORMAT = "llm-explorer/hf-tokenizer"
FORMAT_VERSION = 1
BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character: printable Latin-1 bytes stand
    for themselves, the others for the characters from U+0100 up, in order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


BYTE_OF_CHAR = {char: byte for byte, char in bytes_to_unicode().items()}


class HFTokenizer:
    def __init__(self, data: dict, name: str = "Hugging Face tokenizer", chat_template: str | None = None):
        try:
            self._tokenizer = Tokenizer.from_str(json.dumps(data))
        except Exception as exc:  # tokenizers raises its own Exception type for any malformed file
            raise TokenizerError(f"not a Hugging Face tokenizer.json that `tokenizers` can read ({exc})") from None
        self.data, self.name, self.chat_template = data, name, chat_template
        self.special_tokens = {t["content"]: t["id"] for t in data.get("added_tokens") or [] if t.get("special")}
        self._added = {t["id"] for t in data.get("added_tokens") or []}
        self._byte_level = '"ByteLevel"' in json.dumps([data.get("pre_tokenizer"), data.get("decoder")])
        self._vocab_size = max(self._tokenizer.get_vocab(with_added_tokens=True).values(), default=-1) + 1

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, name: str) -> HFTokenizer:
        """tokenizer.json, with the chat template from tokenizer_config.json when there is one."""
        folder = Path(folder)
        try:
            data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TokenizerError(f"{folder / 'tokenizer.json'} is not a readable JSON file ({exc})") from None
        extra = folder / "tokenizer_config.json"
        try:
            template = json.loads(extra.read_text(encoding="utf-8")).get("chat_template") if extra.is_file() else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            template = None  # only the template is read from it; the tokenizer works without
        return cls(data, name, template if isinstance(template, str) else None)

    @classmethod
    def from_dict(cls, data: dict) -> HFTokenizer:
        if data.get("version") != FORMAT_VERSION or not isinstance(data.get("tokenizer"), dict):
            raise TokenizerError(f"tokenizer file version {data.get('version')!r} or its tokenizer is not readable here")
        return cls(data["tokenizer"], str(data.get("name", "Hugging Face tokenizer")), data.get("chat_template"))

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def encode(self, text: str) -> list[int]:
        """The text's ids, nothing added (no BOS): special tokens written in the text are kept whole."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        token = self._tokenizer.id_to_token(token_id) if 0 <= token_id < self._vocab_size else None
        if token is None:
            raise TokenizerError(f"token id {token_id} is not in {self.name}'s vocabulary of {self._vocab_size}")
        if token_id in self._added:
            return token.encode("utf-8")
        if self._byte_level:
            return bytes(BYTE_OF_CHAR[c] for c in token) if all(c in BYTE_OF_CHAR for c in token) else token.encode()
        if match := BYTE_TOKEN.fullmatch(token):
            return bytes([int(match.group(1), 16)])
        return token.replace("▁", " ").encode("utf-8")

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, {"format": FORMAT, "version": FORMAT_VERSION, "name": self.name,
                          "chat_template": self.chat_template, "tokenizer": self.data})
