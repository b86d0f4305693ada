"""The bf16 output head (lm.readout) that generation uses on a CPU with native bf16: its
logits and probabilities stay within the stated TOLERANCE of the fp32 head, greedy picks the
same tokens, and LM_CPU_BF16=0 keeps fp32. Runs wherever oneDNN computes bf16 (natively or
emulated), so a machine without bf16 instructions still checks the numbers."""

from __future__ import annotations

import pytest
import torch

from lm import readout as readouts
from lm.generate import BrokenModelError, Sampling, generate
from lm.readout import SHORTLIST, TOLERANCE, lay_out, readout
from lm.tokenizer import TiktokenTokenizer
from tests.checkpoints import tiny_gpt

pytestmark = pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="oneDNN has no bf16 here")


@pytest.fixture(scope="module")
def tokenizer():
    return TiktokenTokenizer("r50k_base")


def heads(vocab: int = 50_257, width: int = 64) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Head weights and hidden states: nearly uniform, sharp, and sharp with the large common
    logit a trained head has (GPT-2's logits sit near -100, where bf16's steps are 0.5 apart)."""
    torch.manual_seed(0)
    weight, x = torch.randn(vocab, width) * 0.02, torch.randn(8, width)
    shared = torch.randn(width)
    offset_x = x * 8 - 12 * shared / shared.norm()
    return {"uniform": (weight, x), "sharp": (weight, x * 8), "offset": (weight + 0.3 * shared, offset_x)}


@pytest.mark.parametrize("kind", ["uniform", "sharp", "offset"])
def test_bf16_logits_are_within_the_tolerance_of_fp32(kind):
    weight, xs = heads()[kind]
    fp32, bf16 = lay_out(weight, bf16=False), lay_out(weight, bf16=True)
    assert bf16.packed is not None and bf16.columns is None
    for x in xs:
        exact, close = fp32.logits(x), bf16.logits(x)
        assert close.dtype == torch.float32 and close.shape == exact.shape
        shortlist = exact.topk(SHORTLIST // 2).indices  # well inside what bf16 ranks highest
        torch.testing.assert_close(close[shortlist], exact[shortlist], rtol=0, atol=1e-4)  # fp32's, up to the sum's order
        assert close.argmax() == exact.argmax()
        p, q = torch.softmax(exact, 0), torch.softmax(close, 0)
        assert (p - q).abs().max() <= TOLERANCE["probability"]
        top = p.topk(10).indices
        assert ((p[top] - q[top]).abs() / p[top]).max() <= TOLERANCE["top_relative"]
    assert (close - exact).abs().max() > 0  # the tail is bf16's: this is not the fp32 path by another name


def generated(model, tokenizer, monkeypatch, bf16: bool, **settings):
    monkeypatch.setattr(readouts, "bf16_head_helps", lambda weight: bf16)
    sampling = Sampling(max_new_tokens=24, stop_at_end_of_text=False, **settings)
    return list(generate(model, tokenizer, tokenizer.encode("The cat"), sampling))


def test_generation_in_bf16_matches_fp32(tokenizer, monkeypatch):
    model = tiny_gpt(tokenizer.vocab_size, seed=3, sharpen=8.0)
    exact = generated(model, tokenizer, monkeypatch, bf16=False, temperature=0)
    close = generated(model, tokenizer, monkeypatch, bf16=True, temperature=0)
    assert readout(model, tokenizer.vocab_size).packed is not None  # the bf16 head was the one used
    assert [s.token_id for s in close] == [s.token_id for s in exact]
    for a, b in zip(exact, close):
        assert abs(a.raw_prob - b.raw_prob) <= TOLERANCE["top_relative"] * a.raw_prob
        assert [c.id for c in a.alternatives][:3] == [c.id for c in b.alternatives][:3]
        for x, y in zip(a.alternatives, b.alternatives):
            assert abs(x.raw_prob - y.raw_prob) <= TOLERANCE["probability"]


def test_plain_and_explained_bf16_steps_draw_the_same_tokens(tokenizer, monkeypatch):
    model = tiny_gpt(tokenizer.vocab_size, seed=4, sharpen=4.0)
    monkeypatch.setattr(readouts, "bf16_head_helps", lambda weight: True)
    sampling = Sampling(temperature=1.0, top_k=50, seed=11, max_new_tokens=30, stop_at_end_of_text=False)
    prompt = tokenizer.encode("Once")
    plain = [s.token_id for s in generate(model, tokenizer, prompt, sampling, explain=False)]
    explained = [s.token_id for s in generate(model, tokenizer, prompt, sampling)]
    assert plain == explained


def test_a_broken_model_is_refused_with_the_bf16_head(tokenizer, monkeypatch):
    model = tiny_gpt(tokenizer.vocab_size, seed=0)
    with torch.no_grad():
        model.transformer.ln_f.weight.fill_(float("nan"))
    monkeypatch.setattr(readouts, "bf16_head_helps", lambda weight: True)
    with pytest.raises(BrokenModelError, match="not numbers"):
        next(generate(model, tokenizer, [5], Sampling(temperature=0), explain=False))


def test_the_switch_keeps_fp32_where_asked(monkeypatch):
    weight = torch.zeros(readouts.BF16_MIN_ELEMENTS // 64, 64)
    monkeypatch.setattr(readouts, "cpu_bf16_feature", lambda: "AVX512-BF16")
    monkeypatch.setenv("LM_CPU_BF16", "0")
    assert not readouts.bf16_head_helps(weight)
    monkeypatch.delenv("LM_CPU_BF16")
    assert readouts.bf16_head_helps(weight)
    assert not readouts.bf16_head_helps(weight.double())  # only an fp32 head is laid out in bf16
    assert not readouts.bf16_head_helps(weight[:-1])  # a small head is read from cache: fp32 is as fast
    monkeypatch.setattr(readouts, "cpu_bf16_feature", lambda: None)  # no native bf16: emulated bf16 is slower
    assert not readouts.bf16_head_helps(weight)
