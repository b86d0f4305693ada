"""What the Generate page shows, as pure functions: tokens coloured by how likely the
model found them, the next-token distribution as a bar chart, and a text's loss and
perplexity. Data in, HTML or a plotly figure out, so tests need no server."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field, replace

import numpy as np
import plotly.colors
import plotly.graph_objects as go
import torch
import torch.nn.functional as F

from explorer.charts import PROJECTOR_FONT
from explorer.token_view import is_partial_utf8, token_label
from lm.generate import Sampling, Step, generate
from lm.model import GPT
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
RAW_COLOUR = "#adb5bd"
SAMPLED_COLOUR = "#1c7ed6"
CHOSEN_BAND = "#ffe066"
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


def describe_settings(settings: Sampling) -> str:
    if settings.temperature == 0:
        return "greedy (temperature 0)"
    top_k = f"top-k {settings.top_k:,}" if settings.top_k else "no top-k"
    top_p = f"top-p {settings.top_p:g}" if settings.top_p is not None and settings.top_p < 1 else "no top-p"
    return f"temperature {settings.temperature:g} · {top_k} · {top_p}"


@dataclass
class Generation:
    """One press of Generate, kept in the session so reruns show it without sampling again;
    steps grow while it streams, and stay if a rerun interrupts it."""

    model: str  # the checkpoint folder
    prompt_ids: list[int]  # what the model continued (<|endoftext|> for an empty prompt)
    settings: Sampling
    steps: list[Step] = field(default_factory=list)
    seconds: float = 0.0
    finished: bool = False

    def summary(self, end_id: int | None) -> str:
        speed = f" · {len(self.steps) / self.seconds:,.1f} tokens/s" if self.seconds > 0 else ""
        ending = ""
        if not self.finished:
            ending = " · interrupted"
        elif self.steps and self.steps[-1].token_id == end_id:
            ending = " · stopped at <|endoftext|>"
        return (
            f"{len(self.steps):,} new tokens in {self.seconds:.2f} s{speed} · "
            f"{describe_settings(self.settings)} · seed {self.settings.seed}{ending}"
        )


# --- the next-token distribution at one generated position -----------------------------


@dataclass(frozen=True)
class Bar:
    label: str  # the token as token_label shows it, or "other N tokens"
    token_id: int | None  # None for the bar that sums every token not shown
    raw_prob: float  # the model's probability
    prob: float  # after temperature, top-k and top-p
    chosen: bool


def distribution_bars(step: Step, tokenizer) -> list[Bar]:
    """The model's most likely tokens at this step (and the drawn one, if it was not among
    them), plus one bar for the probability left to every other token."""
    shown = {c.id: (c.raw_prob, c.prob) for c in step.alternatives}
    shown.setdefault(step.token_id, (step.raw_prob, step.prob))
    bars = [Bar(label_of(tokenizer, i), i, raw, prob, i == step.token_id) for i, (raw, prob) in shown.items()]
    rest = tokenizer.vocab_size - len(bars)
    if rest > 0:
        raw_rest = max(0.0, 1 - sum(b.raw_prob for b in bars))
        prob_rest = max(0.0, 1 - sum(b.prob for b in bars))
        bars.append(Bar(f"other {rest:,} tokens", None, raw_rest, prob_rest, False))
    return bars


def distribution_figure(bars: list[Bar], settings: Sampling, position: int) -> go.Figure:
    """Horizontal bars, most likely on top: the model's probabilities (grey) beside what the
    sampling settings made of them (blue); the drawn token's row is shaded. Rows sit on a
    numeric axis with the token as tick text, so two tokens that look alike stay apart."""
    rows = list(range(len(bars)))
    labels = [html.escape(b.label) for b in bars]  # plotly reads tick text as HTML
    ticks = [f"<b>▶ {label}</b>" if b.chosen else label for label, b in zip(labels, bars)]
    hover = [f"{label} (id {b.token_id})" if b.token_id is not None else label for label, b in zip(labels, bars)]
    fig = go.Figure()
    for name, values, colour in (
        ("the model's probabilities", [b.raw_prob for b in bars], RAW_COLOUR),
        (f"after {describe_settings(settings)}", [b.prob for b in bars], SAMPLED_COLOUR),
    ):
        fig.add_trace(
            go.Bar(
                x=values, y=rows, name=name, orientation="h", marker_color=colour,
                text=[f"{v:.1%}" for v in values], textposition="outside", constraintext="none",
                textfont=dict(size=16, color="#212529"), cliponaxis=False,
                customdata=hover, hovertemplate="%{customdata}: %{x:.2%}<extra>" + html.escape(name) + "</extra>",
            )
        )
    for row, bar in zip(rows, bars):
        if bar.chosen:
            fig.add_hrect(y0=row - 0.5, y1=row + 0.5, fillcolor=CHOSEN_BAND, opacity=0.45, line_width=0, layer="below")
    top = max(max(b.raw_prob, b.prob) for b in bars)
    fig.update_layout(
        title=dict(text=f"Token {position}: what the model could have written (▶ drawn)", y=0.98, yanchor="top"),
        barmode="group",
        bargap=0.25,
        font=PROJECTOR_FONT,
        height=120 + 46 * len(bars),
        margin=dict(l=20, r=90, t=130, b=50),
        legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0, font=dict(size=16)),
        xaxis=dict(title="probability", tickformat=".0%", range=[0, min(1.0, top * 1.18)]),
        yaxis=dict(
            tickvals=rows, ticktext=ticks, autorange="reversed", tickfont=dict(family="monospace", size=18),
            automargin=True,
        ),
    )
    return fig


# --- one token at a time -------------------------------------------------------------


@dataclass
class Stepper:
    """The step-by-step mode's state, kept in the session: the prompt, the tokens drawn so far
    with the settings each was drawn with, and where the model looked to choose each one."""

    model: str  # the checkpoint folder
    prompt_ids: list[int]
    seed: int
    steps: list[Step] = field(default_factory=list)
    settings: list[Sampling] = field(default_factory=list)
    attention: list[np.ndarray] = field(default_factory=list)  # per step: [layers, heads, context]

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + [step.token_id for step in self.steps]


def step_seed(seed: int, step: int) -> int:
    """The seed of the step-th draw: fixed by the run's seed, so Restart replays the same tokens
    (under the same settings), and different from step to step."""
    return hash((seed, step)) & 0x7FFFFFFF  # hashing a tuple of ints is the same in every process


@torch.no_grad()
def last_token_attention(model: GPT, ids: list[int]) -> np.ndarray:
    """[layers, heads, T]: where the last of the model's window of `ids` looks in each head.
    Its output is what the next-token probabilities are made from. The model is only read."""
    window = ids[-model.config.block_size :]
    out = model(torch.tensor([window], device=next(model.parameters()).device), explain=True)
    return torch.stack([steps.weights[0, :, -1] for steps in out.attention]).float().cpu().numpy()


def draw_next(model: GPT, tokenizer, stepper: Stepper, settings: Sampling) -> None:
    """Draw one more token with lm.generate under `settings`, and record the attention that chose it."""
    ids = stepper.ids
    seeded = replace(settings, max_new_tokens=1, seed=step_seed(stepper.seed, len(stepper.steps)),
                     stop_at_end_of_text=False)
    step = next(generate(model, tokenizer, ids, seeded))
    stepper.attention.append(last_token_attention(model, ids))
    stepper.steps.append(step)
    stepper.settings.append(settings)


def attention_row_figure(rows: np.ndarray, labels: list[str], per_head: bool, title: str) -> go.Figure:
    """Where one query looks, [layers, heads, T] over the token labels: a row per layer
    (its heads averaged) or a row per head."""
    L, H, T = rows.shape
    z = rows.reshape(L * H, T) if per_head else rows.mean(axis=1)
    names = [f"layer {l} · head {h}" for l in range(L) for h in range(H)] if per_head else [f"layer {l}" for l in range(L)]
    columns = [f"#{j} {html.escape(label)}" for j, label in enumerate(labels)]  # unique, so equal tokens stay apart
    annotate = T <= 16 and len(names) <= 24
    fig = go.Figure(
        go.Heatmap(
            z=z, x=columns, y=names, colorscale="Blues", zmin=0.0, zmax=1.0, xgap=1, ygap=1,
            text=[[f"{v:.2f}" for v in row] for row in z] if annotate else None,
            texttemplate="%{text}" if annotate else None, textfont=dict(size=13),
            colorbar=dict(title=dict(text="weight", side="right")),
            hovertemplate="%{y}<br>looks at %{x}: %{z:.3f}<extra></extra>",
        )
    )
    step = max(1, T // 40)
    fig.update_xaxes(type="category", tickmode="array", tickvals=columns[::step],
                     ticktext=[html.escape(label) for label in labels][::step], tickangle=-60,
                     tickfont=dict(family="monospace", size=16))
    fig.update_yaxes(type="category", autorange="reversed", tickfont=dict(size=16))
    fig.update_layout(title=title, font=PROJECTOR_FONT, height=160 + 32 * len(names) + 6 * min(T, 40),
                      margin=dict(l=20, r=20, t=70, b=20))
    return fig


# --- scoring a text ------------------------------------------------------------------


@dataclass
class TextScore:
    ids: list[int]
    losses: list[float] = field(default_factory=list)  # losses[j]: -ln p(ids[j + 1] | what came before)
    expected: list[int] = field(default_factory=list)  # the model's most likely token at each of those places
    windows: int = 0  # forward passes needed; more than 1 when the text outgrew the context
    min_context: int = 0  # past the first window, every token is predicted from at least this many tokens

    @property
    def mean_loss(self) -> float:
        return sum(self.losses) / len(self.losses)

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean_loss)


@torch.no_grad()
def score_ids(model: GPT, ids: list[int]) -> TextScore:
    """Each token's cross-entropy given the tokens before it (the first has none, so is not
    scored). A text longer than the context is read in windows that overlap by half; each
    token is scored in the first window that holds it, so past the first window every
    token has at least half a context behind it."""
    if len(ids) < 2:
        raise ValueError("scoring needs at least two tokens: the first has nothing before it")
    block = model.config.block_size
    stride = max(1, block // 2)
    device = next(model.parameters()).device
    score = TextScore(list(ids), min_context=block - stride + 1)
    start = 0
    while len(score.losses) < len(ids) - 1:
        window = torch.tensor(ids[start : start + block + 1], device=device)
        inputs, targets = window[:-1], window[1:]
        logits = model(inputs[None]).logits[0].float()
        new = slice(len(score.losses) - start, len(targets))
        score.losses += F.cross_entropy(logits[new], targets[new], reduction="none").tolist()
        score.expected += logits[new].argmax(dim=-1).tolist()
        score.windows += 1
        start += stride
    return score


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
