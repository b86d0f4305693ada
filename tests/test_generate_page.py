"""The Generate page headless (AppTest) on a small random checkpoint: the tokens it shows
are those lm.generate gives, or a plain argmax loop for greedy; the chart is the sampling
distribution of a plain forward pass; the perplexity is the model's own loss."""

from __future__ import annotations

import json
import math
import re
import time

import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer.token_view import token_label
from lm.checkpoint import load_checkpoint, save_checkpoint
from lm.generate import Sampling, generate, sampling_distribution
from lm.tokenizer import BPETokenizer
from tests.checkpoints import make_checkpoint
from tests.conftest import REPO, open_page

PAGE = "app_pages/generate.py"


def peaked_checkpoint(folder, **config):
    """A random checkpoint whose final LayerNorm is scaled up, so its next-token
    distributions are spread out like a trained model's rather than almost uniform."""
    make_checkpoint(folder, **config)
    checkpoint = load_checkpoint(folder)
    with torch.no_grad():
        checkpoint.model.transformer.ln_f.weight.mul_(8)
    save_checkpoint(folder, checkpoint.model, checkpoint.tokenizer, checkpoint.training)
    return load_checkpoint(folder)


@pytest.fixture
def checkpoint(app_dirs):
    return peaked_checkpoint(app_dirs / "runs" / "tiny")


def shown_ids(at) -> list[int]:
    text = next(h.value for h in at.html if 'class="gen-text"' in h.value)
    return [int(i) for i in re.findall(r'data-id="(\d+)"', text)]


def generate_on_page(at, gen_pace=0, **widgets):
    """Press Generate with these settings; at full speed unless a pace (tokens/s) is given."""
    at.select_slider(key="gen_pace").set_value(gen_pace)
    for key, value in widgets.items():
        (at.slider if key in ("gen_temperature", "gen_top_p") else at.number_input)(key=key).set_value(value)
    at.button(key="gen_button").click().run()
    assert not at.exception, at.exception
    return at


def test_without_a_model_the_page_says_how_to_get_one(app_dirs):
    at = open_page(PAGE)
    assert "No model on disk yet" in at.info[0].value
    assert not at.button


def test_seeded_generation_gives_exactly_what_lm_generate_gives(checkpoint):
    at = open_page(PAGE)
    at.text_area(key="gen_prompt").set_value("ROMEO: what")
    generate_on_page(at, gen_temperature=1.2, gen_top_k=40, gen_top_p=0.9, gen_max_new=25, gen_seed=7)
    settings = Sampling(temperature=1.2, top_k=40, top_p=0.9, max_new_tokens=25, seed=7)
    prompt = checkpoint.tokenizer.encode("ROMEO: what")
    expected = [s.token_id for s in generate(checkpoint.model, checkpoint.tokenizer, prompt, settings)]
    assert shown_ids(at) == expected
    summary = next(c.value for c in at.caption if "new tokens in" in c.value)
    assert summary.startswith(f"{len(expected)} new tokens in ")
    assert "tokens/s · temperature 1.2 · top-k 40 · top-p 0.9 · seed 7" in summary

    generation = at.session_state["gen"]
    at.select_slider(key="gen_position").set_value(5).run()  # a rerun shows it again, without sampling again
    assert at.session_state["gen"] is generation and shown_ids(at) == expected
    assert len(re.findall(r"outline:", next(h.value for h in at.html if "gen-text" in h.value))) == 1


def test_greedy_generation_is_the_argmax_continuation(checkpoint):
    at = open_page(PAGE)
    generate_on_page(at, gen_temperature=0.0, gen_max_new=40)
    prompt = checkpoint.tokenizer.encode("ROMEO:")
    ids, end = list(prompt), checkpoint.tokenizer.encode("<|endoftext|>")[0]
    block = checkpoint.model.config.block_size
    with torch.no_grad():
        while len(ids) < len(prompt) + 40 and ids[-1] != end:
            ids.append(int(checkpoint.model(torch.tensor([ids[-block:]])).logits[0, -1].argmax()))
    assert shown_ids(at) == ids[len(prompt) :]


def test_chart_shows_the_distribution_at_the_chosen_token(checkpoint):
    at = open_page(PAGE)
    generate_on_page(at, gen_temperature=0.7, gen_top_k=5, gen_max_new=10, gen_seed=3)
    at.select_slider(key="gen_position").set_value(6).run()
    assert len(shown_ids(at)) == 10
    ids = checkpoint.tokenizer.encode("ROMEO:") + shown_ids(at)
    context, chosen = ids[: len(ids) - 10 + 6], ids[len(ids) - 10 + 6]
    with torch.no_grad():
        logits = checkpoint.model(torch.tensor([context])).logits[0, -1]
    raw = torch.softmax(logits.double(), dim=-1)
    after = sampling_distribution(logits, Sampling(temperature=0.7, top_k=5)).double()
    shown = torch.argsort(raw, descending=True)[:10].tolist()
    shown += [chosen] if chosen not in shown else []

    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    raw_bars, after_bars = chart["data"]
    assert raw_bars["x"][:-1] == pytest.approx(raw[shown].tolist(), abs=1e-5)
    assert after_bars["x"][:-1] == pytest.approx(after[shown].tolist(), abs=1e-5)
    assert sum(x > 0 for x in after_bars["x"][:-1]) == 5  # top-k 5: only five tokens can be drawn
    assert after_bars["x"][-1] == pytest.approx(0, abs=1e-6)  # and none of the others
    labels = [token_label(checkpoint.tokenizer.token_bytes(i)) for i in shown]
    ticks = chart["layout"]["yaxis"]["ticktext"]
    assert [t.removeprefix("<b>▶ ").removesuffix("</b>") for t in ticks[:-1]] == labels
    assert ticks[shown.index(chosen)].startswith("<b>▶")
    assert chart["layout"]["title"]["text"].startswith("Token 7:")


def test_scoring_shows_the_models_perplexity(checkpoint):
    at = open_page(PAGE)
    text = "Before we proceed any further"
    at.text_area(key="score_text").set_value(text).run()
    ids = checkpoint.tokenizer.encode(text)
    with torch.no_grad():
        loss = float(checkpoint.model(torch.tensor([ids[:-1]]), targets=torch.tensor([ids[1:]])).loss)
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Perplexity"].replace(",", "")) == pytest.approx(math.exp(loss), abs=0.06)
    assert float(metrics["Mean loss (nats per token)"]) == pytest.approx(loss, abs=6e-4)
    assert metrics["Tokens scored"] == str(len(ids) - 1)
    assert not any("overlapping windows" in i.value for i in at.info)

    at.text_area(key="score_text").set_value(text * 20).run()
    assert any("overlapping windows" in i.value for i in at.info)
    at.text_area(key="score_text").set_value("a").run()
    assert "at least two tokens" in at.info[0].value and not at.metric


def test_empty_prompt_starts_after_end_of_text(checkpoint):
    at = open_page(PAGE)
    at.text_area(key="gen_prompt").set_value("")
    generate_on_page(at, gen_max_new=5, gen_seed=1)
    assert any("starts after <|endoftext|>" in c.value for c in at.caption)
    text = next(h.value for h in at.html if "gen-text" in h.value)
    assert re.search(r'class="gen-prompt"[^>]*>&lt;\|endoftext\|&gt;</span>', text)
    end = checkpoint.tokenizer.encode("<|endoftext|>")
    settings = Sampling(temperature=0.8, top_k=50, max_new_tokens=5, seed=1)
    assert shown_ids(at) == [s.token_id for s in generate(checkpoint.model, checkpoint.tokenizer, end, settings)]


def test_empty_prompt_without_end_of_text_asks_for_a_prompt(app_dirs):
    make_checkpoint(app_dirs / "runs" / "bytes", tokenizer=BPETokenizer([], special_tokens=()))
    at = open_page(PAGE)
    at.text_area(key="gen_prompt").set_value("").run()
    assert "no <|endoftext|>" in at.warning[0].value
    assert at.button(key="gen_button").disabled


def test_a_padded_vocabulary_never_writes_an_id_the_tokenizer_lacks(app_dirs):
    """GPT-2's 50,257 tokens are often padded to 50,304 rows: padding rows are never drawn."""
    peaked_checkpoint(app_dirs / "runs" / "padded", vocab_size=1000)  # the tokenizer has 320
    at = open_page(PAGE)
    generate_on_page(at, gen_top_k=0, gen_max_new=200)
    assert not at.warning
    ids = shown_ids(at)
    assert len(ids) == 200 and max(ids) < 320
    ticks = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["yaxis"]["ticktext"]
    assert not any("not in the tokenizer" in t for t in ticks)

def test_a_paced_generation_writes_the_same_text_as_one_at_full_speed(checkpoint):
    at = open_page(PAGE)
    generate_on_page(at, gen_max_new=15, gen_seed=4)
    at_full_speed = shown_ids(at)
    started = time.perf_counter()
    generate_on_page(at, gen_pace=50, gen_max_new=15, gen_seed=4)
    took = time.perf_counter() - started
    assert shown_ids(at) == at_full_speed and len(at_full_speed) == 15
    assert took >= 14 / 50  # the 15th token is due 14/50 s after the first
    generation = at.session_state["gen"]
    assert generation.finished and generation.seconds < took  # the model's own time, not the waits
    assert any("shown at 50/s" in c.value for c in at.caption)


@pytest.mark.parametrize("presenting, pace", [(False, 20), (True, 5)])
def test_presenter_view_writes_slowly_by_default(checkpoint, presenting, pace):
    at = AppTest.from_file(str(REPO / PAGE), default_timeout=120)
    at.session_state["presenter"] = presenting
    at.run()
    assert not at.exception, at.exception
    assert at.select_slider(key="gen_pace").value == pace


def test_turning_presenter_view_on_slows_a_pace_nobody_chose_but_keeps_a_chosen_one(checkpoint):
    at = open_page(PAGE)
    at.session_state["presenter"] = True
    at.run()
    assert at.select_slider(key="gen_pace").value == 5  # was 20, the normal view's default
    at.session_state["presenter"] = False
    at.run()
    assert at.select_slider(key="gen_pace").value == 20
    at.select_slider(key="gen_pace").set_value(50).run()
    at.session_state["presenter"] = True
    at.run()
    assert at.select_slider(key="gen_pace").value == 50  # chosen: kept
