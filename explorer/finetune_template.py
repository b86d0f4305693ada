"""The Alpaca template as the model reads it, token by token, with the tokens the loss counts
(the response and the <|endoftext|> that ends it) marked: the model reads the whole text but
learns only to answer. HTML from a tokenizer and an example, no server needed."""

from __future__ import annotations

import html

import streamlit as st

from explorer.token_view import TokenPiece, describe_tokens
from lm.finetune.data import ALPACA_TEMPLATE, Example, response_mask

COUNTED, SKIPPED = "#b2f2bb", "#e9ecef"  # green: the loss counts it; grey: only read
COUNTED_BORDER = "2px solid #2f9e44"
MAX_TOKENS = 400


def mask_html(pieces: list[TokenPiece], mask: list[int], limit: int = MAX_TOKENS) -> str:
    """Chips, green with a border where mask is 1 (the loss counts the token), grey where 0;
    a line break after each newline token, as the template reads. Long examples keep their end
    (the response)."""
    start = max(0, len(pieces) - limit)
    chips = []
    for piece, counted in zip(pieces[start:], mask[start:]):
        colour, border = (COUNTED, COUNTED_BORDER) if counted else (SKIPPED, "1px solid rgba(0,0,0,.15)")
        word = "counted by the loss" if counted else "read, not learned"
        chips.append(
            f'<span class="tok" title="id {piece.id} · {word}" style="display:inline-block;background:{colour};'
            f'color:#212529;border:{border};border-radius:4px;padding:1px 3px;margin:2px 1px;white-space:pre;'
            f'line-height:1.25">{html.escape(piece.label)}</span>' + ("<br>" if piece.ends_line else "")
        )
    cut = f'<p style="color:#495057">… the first {start:,} tokens left out.</p>' if start else ""
    return f'{cut}<div class="token-chips" style="font-size:1rem;line-height:1.8">{"".join(chips)}</div>'


def mask_counts(mask: list[int]) -> tuple[int, int]:
    """(tokens the loss counts, tokens in all)."""
    return sum(1 for m in mask if m), len(mask)


def template_section(tokenizer, example: Example, block_size: int) -> None:
    """The template, then one example as the model reads it, the counted tokens marked."""
    st.markdown("**The Alpaca template**: every example becomes one text in this layout; the model learns to write "
                "what follows `### Response:`.")
    st.code(ALPACA_TEMPLATE.format(instruction="{instruction}", input_block="\n\n### Input:\n{input}"), language=None,
            wrap_lines=True)
    try:
        ids, mask = response_mask(tokenizer, example, block_size=block_size)
    except ValueError as exc:  # a tokenizer without <|endoftext|>
        st.warning(f"This model cannot be instruction-tuned: {exc}.")
        return
    counted, total = mask_counts(mask)
    st.markdown(f"**What the loss counts**: of this example's {total:,} tokens, the {counted:,} "
                ":green-background[in green] (the answer and its <|endoftext|>) are learned; the grey ones are only read.")
    st.html(mask_html(describe_tokens(tokenizer, ids), mask))
