"""Tokens coloured by how likely the model found them, as HTML: a generated text (each token
on the colour of its probability) and a scored text (each on the colour of its loss), with
their legends. Data in, HTML out, so tests need no server."""

from __future__ import annotations

import html
import math

import plotly.colors

from explorer.token_view import is_partial_utf8, token_label
from lm.generate import Step
from lm.inspect import TextScore
from lm.tokenizer import TokenizerError

# The light half of ColorBrewer's YlOrRd: pale yellow for tokens the model was sure of,
# orange-red for surprises, so surprises stand out and black text stays readable on all.
SCALE = "YlOrRd"
SCALE_DARKEST = 0.65
TEXT_COLOUR = "#000"
# Probabilities on a log scale from 0.1% to 100%: a model's choices spread over orders of
# magnitude, and a linear scale would paint everything below 20% the same.
FLOOR = 1e-3
LEGEND_PROBABILITIES = (FLOOR, 0.01, 0.03, 0.1, 0.3, 1.0)
SELECTED_OUTLINE = "3px solid #1864ab"
PROMPT_STYLE = "background:#e9ecef;color:#495057;border:1px dashed #868e96;font-style:italic;"
FONT_SIZE = "1.3rem"


# Sampled once in steps of 1%: plotly's sampler takes milliseconds a call, too slow per token.
_COLOURS = plotly.colors.sample_colorscale(SCALE, [(1 - i / 100) * SCALE_DARKEST for i in range(101)])


def confidence_colour(confidence: float) -> str:
    """Background for a token: 1 = the model was certain (pale), 0 = it was not (strong)."""
    return _COLOURS[round(min(confidence, 1.0) * 100) if confidence > 0 else 0]  # NaN: the strongest colour


def probability_confidence(probability: float) -> float:
    """A probability's place on the colour scale: 100% is 1, 0.1% or less is 0 (log scale)."""
    return 1 - math.log10(min(max(probability, FLOOR), 1.0)) / math.log10(FLOOR) if probability > 0 else 0.0


def loss_confidence(loss: float) -> float:
    """A loss (-ln p, in nats) on the same scale as the probability p it stands for."""
    return probability_confidence(math.exp(-loss))


def visible(text: str) -> str:
    """Text as it reads, with line breaks marked (↵) and other control characters shown."""
    return "".join(ch if ch == " " else "↵\n" if ch == "\n" else token_label(ch.encode()) for ch in text)


def label_of(tokenizer, token_id: int) -> str:
    """token_label of an id, also for ids the model has but its tokenizer lacks (a
    vocabulary padded to a round size, as GPT-2's 50,257 tokens are to 50,304)."""
    try:
        return token_label(tokenizer.token_bytes(token_id))
    except TokenizerError:
        return f"[id {token_id}: not in the tokenizer]"


def _span(text: str, background: str, title: str, style: str = "", kind: str = "gen-tok", **data) -> str:
    attrs = "".join(f' data-{name}="{html.escape(str(value))}"' for name, value in data.items())
    return (
        f'<span class="{kind}" title="{html.escape(title)}"{attrs} style="background:{background};'
        f"color:{TEXT_COLOUR};border:1px solid rgba(0,0,0,.25);border-radius:4px;padding:0 2px;white-space:pre;"
        f'margin:0 1px;{style}">{html.escape(text)}</span>'
    )


def _token_span(raw: bytes, confidence: float, title: str, selected: bool = False, **data) -> str:
    style = "border:2px dashed #c92a2a;font-family:monospace;" if is_partial_utf8(raw) else ""
    if is_partial_utf8(raw):
        title += "\npart of a UTF-8 character: these bytes are not a character on their own"
    if selected:
        style += f"outline:{SELECTED_OUTLINE};outline-offset:1px;"
    text = visible(raw.decode("utf-8", errors="backslashreplace"))
    return _span(text, confidence_colour(confidence), title, style, **data)


def _text_block(parts: list[str], kind: str) -> str:
    """Tokens keep their spaces inside (white-space:pre), so <wbr> lets a line break between them."""
    return (
        f'<div class="{kind}" style="font-size:{FONT_SIZE};line-height:2.1;white-space:pre-wrap;'
        f'overflow-wrap:anywhere">{"<wbr>".join(parts)}</div>'
    )


def prompt_span(text: str, title: str = "the prompt") -> str:
    return (
        f'<span class="gen-prompt" title="{html.escape(title)}" style="{PROMPT_STYLE}border-radius:4px;'
        f'padding:0 4px;margin-right:2px">{html.escape(visible(text))}</span>'
    )


def generation_html(prompt: str, steps: list[Step], selected: int | None = None) -> str:
    """The prompt (grey, dashed) then each generated token on the colour of the probability
    the model gave it; `selected` (an index into steps) is outlined."""
    parts = [prompt_span(prompt)]
    for i, step in enumerate(steps):
        title = (
            f"token {i + 1} · id {step.token_id}\nthe model gave it {step.raw_prob:.1%}\n"
            f"after temperature, top-k, top-p: {step.prob:.1%}"
        )
        confidence = probability_confidence(step.raw_prob)
        parts.append(_token_span(step.token_bytes, confidence, title, i == selected, id=step.token_id))
    return _text_block(parts, "gen-text")


def _swatch_label(probability: float, with_loss: bool) -> str:
    at_most = "≤ " if probability == FLOOR else ""  # the strongest colour also stands for everything rarer
    label = at_most + (f"{probability:.1%}" if probability < 0.01 else f"{probability:.0%}")
    if with_loss:
        label += f" ({at_most.replace('≤', '≥')}{math.log(1 / probability):.1f})"
    return label


def _legend(before: str, with_loss: bool, after: str = "") -> str:
    """A row of sample tokens on the colours of LEGEND_PROBABILITIES, each labelled."""
    chips = ""
    for p in LEGEND_PROBABILITIES:
        label = _swatch_label(p, with_loss)
        chips += _span(label, confidence_colour(probability_confidence(p)), label, kind="gen-swatch")
    return (
        f'<div class="gen-legend" style="font-size:1.05rem;line-height:2;color:#212529">'
        f"{html.escape(before)} {chips}{after}</div>"
    )


def probability_legend() -> str:
    return _legend("Colour = the probability the model gave the token:", False, f" &nbsp; {prompt_span('prompt')}")


def loss_legend() -> str:
    return _legend("Colour = the probability the model gave the token (its loss, −ln p):", True)


def score_html(score: TextScore, tokenizer) -> str:
    """The first token in prompt style (nothing predicts it), then each token on the colour
    of its loss; hovering shows the loss, its probability and the model's own guess."""
    parts = [prompt_span(tokenizer.decode(score.ids[:1]), "the first token: nothing before it to predict it from")]
    for token_id, loss, guess in zip(score.ids[1:], score.losses, score.expected):
        title = (
            f"loss {loss:.2f} nats · probability {math.exp(-loss):.1%}\n"
            f"the model's most likely token here: {label_of(tokenizer, guess)}"
        )
        parts.append(
            _token_span(tokenizer.token_bytes(token_id), loss_confidence(loss), title, id=token_id,
                        loss=f"{loss:.4f}")
        )
    return _text_block(parts, "score-text")
