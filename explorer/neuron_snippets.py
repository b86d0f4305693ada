"""Where a neuron fires, as HTML: a few tokens of a passage around the token it fires on, that
token marked. Pure functions of labels and positions."""

from __future__ import annotations

import html

BEFORE, AFTER = 12, 3  # tokens of context around the firing token
MARK = "#ffa94d"


def snippet_html(labels: list[str], position: int, value: float) -> str:
    """One passage: …context **token** context…, the token marked, with the neuron's value."""
    start, end = max(0, position - BEFORE), min(len(labels), position + AFTER + 1)
    pieces = [html.escape(label) for label in labels[start:end]]
    pieces[position - start] = (f'<mark style="background:{MARK};padding:0 2px;border-radius:3px" '
                                f'title="{value:.3f}">{pieces[position - start]}</mark>')
    return (f'<div class="neuron-snippet" style="font-family:monospace;white-space:pre-wrap;margin:2px 0">'
            f'{"…" if start else ""}{"".join(pieces)}{"…" if end < len(labels) else ""}'
            f'  <span style="color:#495057">({value:.2f})</span></div>')
