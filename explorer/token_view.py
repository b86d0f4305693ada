"""Tokens as coloured chips: pure functions from (tokenizer, ids) to HTML, so the
page stays thin and tests need no server."""

from __future__ import annotations

import html
import unicodedata
from dataclasses import dataclass
from typing import Iterable

from lm.tokenizer import BPETokenizer, Tokenizer

# Light pastels with dark text: readable on a projector, distinct side by side.
CHIP_COLOURS = ("#ffd8a8", "#b2f2bb", "#a5d8ff", "#fcc2d7", "#ffec99", "#d0bfff", "#99e9f2", "#e9ecef")
HIGHLIGHT = "#ff8787"
VISIBLE_WHITESPACE = {" ": "·", "\n": "↵", "\t": "→", "\r": "␍"}


@dataclass(frozen=True)
class TokenPiece:
    id: int
    raw: bytes
    label: str  # what the chip shows: text with visible whitespace, or \xNN for stray bytes
    partial: bool  # its bytes are not valid UTF-8 on their own (part of a character)
    ends_line: bool


def token_label(raw: bytes) -> str:
    """A token's bytes as one readable string (whitespace made visible, stray bytes as \\xNN)."""
    text = raw.decode("utf-8", errors="backslashreplace")
    return "".join(VISIBLE_WHITESPACE.get(ch) or (repr(ch)[1:-1] if unicodedata.category(ch) == "Cc" else ch) for ch in text)


def is_partial_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def describe_tokens(tokenizer: Tokenizer, ids: Iterable[int]) -> list[TokenPiece]:
    pieces = []
    for token_id in ids:
        raw = tokenizer.token_bytes(token_id)
        pieces.append(TokenPiece(token_id, raw, token_label(raw), is_partial_utf8(raw), raw.endswith(b"\n")))
    return pieces


def _chip(piece: TokenPiece, colour: str, show_ids: bool) -> str:
    hex_bytes = " ".join(f"{b:02X}" for b in piece.raw)
    title = f"id {piece.id} · bytes {hex_bytes}"
    if piece.partial:
        title += " · part of a UTF-8 character: these bytes are not a character on their own"
    border = "2px dashed #c92a2a" if piece.partial else "1px solid rgba(0,0,0,.15)"
    font = "font-family:monospace;" if piece.partial else ""
    id_line = (
        f'<span style="display:block;font-size:.7em;color:#495057;font-family:monospace">{piece.id}</span>'
        if show_ids
        else ""
    )
    chip = (
        f'<span class="tok" title="{html.escape(title)}" style="display:inline-block;background:{colour};'
        f"color:#212529;border:{border};border-radius:4px;padding:1px 3px;margin:2px 1px;"
        f'white-space:pre;line-height:1.25;text-align:center;{font}">{html.escape(piece.label)}{id_line}</span>'
    )
    return chip + ("<br>" if piece.ends_line else "")


def chips_html(
    pieces: list[TokenPiece],
    show_ids: bool = False,
    highlight: frozenset[int] = frozenset(),
    limit: int = 3000,
    font_size: str = "1.15rem",
) -> str:
    """Chips coloured in turn (or red for ids in `highlight`); long texts are cut at `limit`."""
    chips = [
        _chip(p, HIGHLIGHT if p.id in highlight else CHIP_COLOURS[i % len(CHIP_COLOURS)], show_ids)
        for i, p in enumerate(pieces[:limit])
    ]
    more = (
        f'<p style="color:#495057">… showing the first {limit:,} of {len(pieces):,} tokens.</p>'
        if len(pieces) > limit
        else ""
    )
    return f'<div class="token-chips" style="font-size:{font_size};line-height:1.9">{"".join(chips)}</div>{more}'


@dataclass(frozen=True)
class TextStats:
    characters: int
    bytes: int
    tokens: int

    @property
    def chars_per_token(self) -> float:
        return self.characters / self.tokens if self.tokens else 0.0


def text_stats(text: str, ids: list[int]) -> TextStats:
    return TextStats(len(text), len(text.encode("utf-8")), len(ids))


def vocabulary_rows(tokenizer: BPETokenizer) -> list[dict]:
    """One row per token, learned ones first: how the BPE built it, and how often its pair was seen."""
    rows = []
    for m in tokenizer.merges:
        left, right = (token_label(tokenizer.vocab[t]) for t in m.pair)
        raw = tokenizer.vocab[m.id]
        rows.append({"id": m.id, "token": token_label(raw), "bytes": len(raw), "made from": f"{left} + {right}", "count": m.count})
    for text, special_id in tokenizer.special_tokens.items():
        rows.append({"id": special_id, "token": text, "bytes": len(text.encode()), "made from": "special token", "count": None})
    rows += [{"id": i, "token": token_label(bytes([i])), "bytes": 1, "made from": "a single byte", "count": None} for i in range(256)]
    return rows
