"""Tests for the Generate page's views (explorer.generation_view, next_token_charts,
generate_stream): colours checked with the WCAG luminance formula,
chart data against sampling_distribution on a plain forward pass, and losses and
perplexity against cross-entropy computed here token by token."""

from __future__ import annotations

import html
import math
import re

import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer.generate_stream import Generation
from explorer.generation_view import (
    confidence_colour, generation_html, label_of, loss_confidence, loss_legend, probability_confidence,
    probability_legend, score_html,
)
from explorer.next_token_charts import Bar, describe_settings, distribution_bars, distribution_figure
from explorer.token_view import token_label
from lm.generate import Sampling, Step, generate, sampling_distribution
from lm.inspect import score_ids
from lm.model import GPT
from tests.checkpoints import shakespeare_bpe, tiny_gpt

BLOCK = 16
TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak. "
    "You are all resolved rather to die than to famish?"
)


@pytest.fixture(scope="module")
def tokenizer():
    return shakespeare_bpe()


@pytest.fixture(scope="module")
def model(tokenizer) -> GPT:
    return tiny_gpt(tokenizer.vocab_size, sharpen=8, block_size=BLOCK)


def luminance(colour: str) -> float:
    """WCAG relative luminance of an 'rgb(r, g, b)' colour."""
    channels = [int(c) / 255 for c in re.findall(r"\d+", colour)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_colour_gets_lighter_as_probability_rises_and_black_text_stays_readable():
    grid = [i / 200 for i in range(201)]
    lum = [luminance(confidence_colour(p)) for p in grid]
    assert all(a <= b for a, b in zip(lum, lum[1:]))
    assert lum[-1] - lum[0] > 0.5  # the ends are far apart, not a flat scale
    assert min((l + 0.05) / 0.05 for l in lum) >= 4.5  # WCAG AA contrast against black text
    assert confidence_colour(-1) == confidence_colour(0) == confidence_colour(float("nan"))
    assert confidence_colour(2) == confidence_colour(1)


def test_probabilities_and_losses_share_one_log_scale():
    assert probability_confidence(1.0) == 1.0
    assert probability_confidence(0.1) == pytest.approx(2 / 3)
    assert probability_confidence(0.01) == pytest.approx(1 / 3)
    assert probability_confidence(1e-3) == probability_confidence(1e-9) == probability_confidence(0.0) == 0.0
    assert probability_confidence(float("nan")) == 0.0
    places = [probability_confidence(10 ** (-x / 10)) for x in range(40)]
    assert all(a > b for a, b in zip(places, places[1:31])) and set(places[30:]) == {0.0}
    for p in (0.9, 0.2, 0.004):
        assert loss_confidence(-math.log(p)) == pytest.approx(probability_confidence(p))


def step(position, token_id, raw: bytes, raw_prob=0.5, prob=0.6, alternatives=()) -> Step:
    return Step(position, token_id, raw, raw.decode(errors="ignore"), raw_prob, prob, list(alternatives))


def test_generation_html_escapes_tokens_and_marks_prompt_selection_and_partial_bytes():
    steps = [step(2, 7, b"<b>hi</b>", 0.9), step(3, 8, b"\xf0\x9f", 0.05), step(4, 9, b" a\n", 0.3)]
    page = generation_html("Q: <i>", steps, selected=1)
    assert "<b>hi" not in page and "&lt;b&gt;hi&lt;/b&gt;" in page
    assert re.search(r'class="gen-prompt"[^>]*>Q: &lt;i&gt;</span>', page)
    assert re.findall(r'data-id="(\d+)"', page) == ["7", "8", "9"]
    tokens = re.findall(r'<span class="gen-tok"([^>]*)>(.*?)</span>', page, re.S)
    assert [text for _, text in tokens] == ["&lt;b&gt;hi&lt;/b&gt;", r"\xf0\x9f", " a↵\n"]
    assert [("outline:" in attrs) for attrs, _ in tokens] == [False, True, False]
    assert "dashed" in tokens[1][0] and "part of a UTF-8 character" in tokens[1][0]
    assert confidence_colour(probability_confidence(0.9)) in tokens[0][0]
    assert confidence_colour(probability_confidence(0.05)) in tokens[1][0]
    assert "the model gave it 90.0%" in tokens[0][0] and "after temperature, top-k, top-p: 60.0%" in tokens[0][0]


def test_legends_show_the_colours_they_explain():
    legend = probability_legend()
    for p, label in ((1e-3, "≤ 0.1%"), (0.03, "3%"), (1.0, "100%")):
        assert f"background:{confidence_colour(probability_confidence(p))};" in legend and f">{label}</span>" in legend
    assert "gen-prompt" in legend
    losses = loss_legend()
    assert ">10% (2.3)</span>" in losses and ">≤ 0.1% (≥ 6.9)</span>" in losses and ">100% (0.0)</span>" in losses


@pytest.mark.parametrize(
    "settings",
    [
        Sampling(temperature=0.7, top_k=5, seed=1, max_new_tokens=12),
        Sampling(temperature=1.3, top_p=0.6, seed=2, max_new_tokens=12),
        Sampling(temperature=0, max_new_tokens=12),
    ],
    ids=["top-k", "top-p", "greedy"],
)
def test_bars_are_the_sampling_distribution_of_a_plain_forward_pass(model, tokenizer, settings):
    prompt = tokenizer.encode("ROMEO: what")
    steps = list(generate(model, tokenizer, prompt, settings))
    ids = prompt + [s.token_id for s in steps]
    vocab = tokenizer.vocab_size
    for s in steps:
        with torch.no_grad():
            logits = model(torch.tensor([ids[: s.position][-BLOCK:]])).logits[0, -1, :vocab]
        raw = torch.softmax(logits.double(), dim=-1)
        after = sampling_distribution(logits, settings).double()
        bars = distribution_bars(s, tokenizer)
        top10 = torch.argsort(raw, descending=True)[:10].tolist()
        shown = top10 + ([s.token_id] if s.token_id not in top10 else [])
        assert [b.token_id for b in bars] == shown + [None]
        assert [b.label for b in bars[:-1]] == [token_label(tokenizer.token_bytes(i)) for i in shown]
        assert bars[-1].label == f"other {vocab - len(shown):,} tokens"
        assert [b.raw_prob for b in bars[:-1]] == pytest.approx(raw[shown].tolist(), abs=1e-5)
        assert [b.prob for b in bars[:-1]] == pytest.approx(after[shown].tolist(), abs=1e-5)
        assert bars[-1].raw_prob == pytest.approx(1 - float(raw[shown].sum()), abs=1e-5)
        assert bars[-1].prob == pytest.approx(1 - float(after[shown].sum()), abs=1e-5)
        assert [b.chosen for b in bars] == [i == s.token_id for i in shown] + [False]


def test_figure_plots_both_series_and_keeps_lookalike_tokens_apart():
    bars = [
        Bar("<|endoftext|>", 5, 0.5, 0.7, False),
        Bar("ab", 6, 0.2, 0.3, True),
        Bar("ab", 7, 0.1, 0.0, False),
        Bar("other 10 tokens", None, 0.2, 0.0, False),
    ]
    fig = distribution_figure(bars, Sampling(temperature=0.5, top_k=2), position=4)
    raw, after = fig.data
    assert list(raw.x) == [0.5, 0.2, 0.1, 0.2] and list(after.x) == [0.7, 0.3, 0.0, 0.0]
    assert list(raw.y) == list(after.y) == [0, 1, 2, 3]
    assert after.name == "after temperature 0.5 · top-k 2 · no top-p"
    ticks = fig.layout.yaxis.ticktext
    assert list(fig.layout.yaxis.tickvals) == [0, 1, 2, 3]
    assert ticks == ("&lt;|endoftext|&gt;", "<b>▶ ab</b>", "ab", "other 10 tokens")
    assert list(raw.text) == ["50.0%", "20.0%", "10.0%", "20.0%"]
    assert [(s.y0, s.y1) for s in fig.layout.shapes] == [(0.5, 1.5)]  # the drawn token's row is shaded
    assert fig.layout.title.text.startswith("Token 4:")


def test_ids_beyond_the_tokenizer_get_a_label_not_an_error(tokenizer):
    assert label_of(tokenizer, 5) == token_label(tokenizer.token_bytes(5))
    assert label_of(tokenizer, tokenizer.vocab_size + 3) == f"[id {tokenizer.vocab_size + 3}: not in the tokenizer]"


def test_describe_settings():
    assert describe_settings(Sampling(temperature=0, top_k=5)) == "greedy (temperature 0)"
    assert describe_settings(Sampling(temperature=1.0, top_p=0.9)) == "temperature 1 · no top-k · top-p 0.9"


def test_generation_summary_reports_speed_and_how_it_ended():
    steps = [step(1, 4, b"a"), step(2, 319, b"<|endoftext|>")]
    gen = Generation("runs/x", [3], Sampling(temperature=0.8, top_k=50, seed=9), steps=steps, seconds=0.5, finished=True)
    assert gen.summary(end_id=319) == (
        "2 new tokens in 0.50 s · 4.0 tokens/s · temperature 0.8 · top-k 50 · no top-p · seed 9"
        " · stopped at <|endoftext|>"
    )
    gen.finished = False
    assert gen.summary(end_id=319).endswith("seed 9 · interrupted")
    gen.pace = 5
    assert "4.0 tokens/s, shown at 5/s ·" in gen.summary(end_id=319)  # the model's speed, and the speed it was shown at


def cross_entropy(model: GPT, context: list[int], target: int) -> float:
    with torch.no_grad():
        logits = model(torch.tensor([context])).logits[0, -1].double()
    return float(-torch.log_softmax(logits, dim=-1)[target])


def test_short_text_loss_and_perplexity_match_the_models_own_loss(model, tokenizer):
    ids = tokenizer.encode("To be, or not")
    assert 2 < len(ids) <= BLOCK
    score = score_ids(model, ids)
    with torch.no_grad():
        loss = model(torch.tensor([ids[:-1]]), targets=torch.tensor([ids[1:]])).loss
    assert score.windows == 1 and len(score.losses) == len(ids) - 1
    assert score.perplexity == pytest.approx(math.exp(float(loss)), rel=1e-5)
    by_hand = [cross_entropy(model, ids[: j + 1], ids[j + 1]) for j in range(len(ids) - 1)]
    assert score.losses == pytest.approx(by_hand, abs=1e-4)
    with torch.no_grad():
        expected = model(torch.tensor([ids[:-1]])).logits[0].argmax(dim=-1).tolist()
    assert score.expected == expected


def test_long_text_is_scored_in_overlapping_windows(model, tokenizer):
    ids = tokenizer.encode(TEXT)
    assert len(ids) > 3 * BLOCK
    score = score_ids(model, ids)
    stride = BLOCK // 2
    for j, loss in enumerate(score.losses):
        start = max(0, -(-(j - BLOCK + 1) // stride)) * stride  # the first window that holds target j
        assert loss == pytest.approx(cross_entropy(model, ids[start : j + 1], ids[j + 1]), abs=1e-4)
        if j >= BLOCK:
            assert j + 1 - start >= score.min_context == BLOCK - stride + 1
    assert len(score.losses) == len(ids) - 1
    assert score.windows == math.ceil((len(ids) - 1 - BLOCK) / stride) + 1
    assert score.perplexity == pytest.approx(math.exp(sum(score.losses) / len(score.losses)))


def test_random_model_perplexity_is_about_the_vocabulary_size(tokenizer):
    vocab = tokenizer.vocab_size
    score = score_ids(tiny_gpt(vocab, block_size=BLOCK), tokenizer.encode(TEXT))
    assert vocab / 1.5 < score.perplexity < vocab * 1.5


def test_one_token_cannot_be_scored(model):
    with pytest.raises(ValueError, match="at least two tokens"):
        score_ids(model, [5])


def test_score_html_colours_each_token_by_its_loss(model, tokenizer):
    ids = tokenizer.encode("To be, or not")
    score = score_ids(model, ids)
    page = score_html(score, tokenizer)
    first = re.search(r'class="gen-prompt"[^>]*>(.*?)</span>', page).group(1)
    assert first == tokenizer.decode(ids[:1])
    spans = re.findall(r'<span class="gen-tok"([^>]*)>', page)
    assert re.findall(r'data-id="(\d+)"', page) == [str(i) for i in ids[1:]]
    for attrs, loss, guess in zip(spans, score.losses, score.expected):
        assert f"background:{confidence_colour(probability_confidence(math.exp(-loss)))};" in attrs
        assert f"loss {loss:.2f} nats · probability {math.exp(-loss):.1%}" in attrs
        assert html.escape(token_label(tokenizer.token_bytes(guess))) in attrs


def score_tab_alone(model, tokenizer):
    """The Score tab as a script of its own: its arguments are all it needs, no page around it."""
    from explorer.score_view import score_a_text

    score_a_text(model, tokenizer)


def test_the_score_tab_renders_from_its_arguments_alone(model, tokenizer):
    at = AppTest.from_function(score_tab_alone, args=(model, tokenizer), default_timeout=60).run()
    at.text_area(key="score_text").set_value(TEXT).run()
    assert not at.exception and not at.warning, at.exception
    score = score_ids(model, tokenizer.encode(TEXT))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Perplexity"] == f"{score.perplexity:,.1f}"
    assert metrics["Tokens scored"] == f"{len(score.losses):,}"
    assert f"read in {score.windows} overlapping windows" in at.info[0].value
    assert score_html(score, tokenizer) in [h.value for h in at.html]
