"""Tests for lm.generate: every token is checked against a plain forward pass of the
model and a sampling rule computed here (argmax, top-k set, nucleus); the KV cache,
seeds, stopping, and the text of tokens that split a UTF-8 character."""

from __future__ import annotations

import codecs
import itertools

import pytest
import torch

import lm.generate
from lm.generate import Sampling, Step, end_of_text_id, generate, sampling_distribution
from lm.model import GPT
from lm.tokenizer import BPETokenizer, TiktokenTokenizer
from tests.checkpoints import shakespeare_bpe, tiny_gpt

BLOCK = 16
EMOJI_PROMPT = "Thou art naïve, café 🙂 señor"


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return shakespeare_bpe()


def random_gpt(vocab_size: int, **config) -> GPT:
    return tiny_gpt(vocab_size, block_size=BLOCK, **config)


@pytest.fixture(scope="module")
def model(tokenizer) -> GPT:
    """A random GPT whose next-token distributions are spread (logits with a standard
    deviation near 1) rather than almost uniform."""
    return random_gpt(tokenizer.vocab_size, sharpen=8)


def run(model, tokenizer, prompt, use_cache=True, alternatives=10, **settings) -> list[Step]:
    settings = dict(stop_at_end_of_text=False) | settings
    return list(generate(model, tokenizer, prompt, Sampling(**settings), use_cache=use_cache, alternatives=alternatives))


@torch.no_grad()
def plain_logits(model: GPT, ids: list[int]) -> torch.Tensor:
    """The next-token logits from one forward pass over the last block_size ids."""
    return model(torch.tensor([ids[-model.config.block_size :]])).logits[0, -1].double()


def each_step(model, prompt, steps):
    """(step, the model's logits for it from a plain forward) for every step."""
    ids = list(prompt)
    for step in steps:
        yield step, plain_logits(model, ids)
        ids.append(step.token_id)


def nucleus(probs: torch.Tensor, p: float) -> set[int]:
    """The smallest set of most likely tokens whose probability reaches p."""
    sorted_probs, order = torch.sort(probs.double(), descending=True)
    size = int((torch.cumsum(sorted_probs, 0) < p).sum()) + 1
    return set(order[:size].tolist())


def top_k_ids(scores: torch.Tensor, k: int) -> set[int]:
    """The k highest-scoring ids (logits or probabilities rank the same)."""
    return set(torch.argsort(scores, descending=True)[:k].tolist())


def prompt_ids(tokenizer, n: int) -> list[int]:
    return tokenizer.encode("ROMEO: But soft, what light through yonder window breaks? It is the east")[:n]


# --- the cache, greedy decoding and seeds --------------------------------------------


@pytest.mark.parametrize(
    "prompt_len, new_tokens, temperature",
    [(3, 10, 0.0), (5, 30, 0.0), (20, 6, 0.0), (4, 30, 1.0)],
    ids=["within-context", "window-slides", "prompt-longer-than-context", "sampled-window-slides"],
)
def test_cache_gives_the_same_tokens(model, tokenizer, prompt_len, new_tokens, temperature):
    prompt = prompt_ids(tokenizer, prompt_len)
    assert len(prompt) == prompt_len
    kw = dict(temperature=temperature, max_new_tokens=new_tokens, seed=3)
    cached, uncached = run(model, tokenizer, prompt, **kw), run(model, tokenizer, prompt, use_cache=False, **kw)
    assert [s.token_id for s in cached] == [s.token_id for s in uncached]
    assert [s.raw_prob for s in cached] == pytest.approx([s.raw_prob for s in uncached], abs=1e-5)


def test_greedy_is_the_argmax_of_a_plain_forward(model, tokenizer):
    prompt = prompt_ids(tokenizer, 6)
    steps = run(model, tokenizer, prompt, temperature=0, max_new_tokens=25)  # slides past 16
    for step, logits in each_step(model, prompt, steps):
        assert step.token_id == int(logits.argmax())
        assert step.raw_prob == pytest.approx(float(torch.softmax(logits, 0)[step.token_id]), abs=1e-5)
        assert step.prob == 1.0


def test_seeds(model, tokenizer):
    prompt = prompt_ids(tokenizer, 4)

    def sample(seed):
        return [s.token_id for s in run(model, tokenizer, prompt, max_new_tokens=20, seed=seed)]

    assert sample(7) == sample(7)
    runs = [sample(seed) for seed in range(4)]
    assert len({tuple(r) for r in runs}) == len(runs)


# --- top-k and top-p, step by step against an independent computation --------------


@pytest.mark.parametrize("seed", range(4))
def test_top_k_never_leaves_the_k_most_likely(model, tokenizer, seed):
    prompt, k, temperature = prompt_ids(tokenizer, 3), 5, 0.8
    steps = run(model, tokenizer, prompt, top_k=k, temperature=temperature, max_new_tokens=30, seed=seed, alternatives=12)
    for step, logits in each_step(model, prompt, steps):
        allowed = top_k_ids(logits, k)
        assert step.token_id in allowed
        kept = torch.zeros_like(logits)
        kept[list(allowed)] = torch.softmax(logits / temperature, 0)[list(allowed)]
        expected = kept / kept.sum()
        for c in step.alternatives:
            assert c.prob == pytest.approx(float(expected[c.id]), abs=1e-5)  # 0 outside the top k
        assert step.prob == pytest.approx(float(expected[step.token_id]), abs=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_top_p_never_leaves_the_nucleus(model, tokenizer, seed):
    prompt, p = prompt_ids(tokenizer, 3), 0.5
    steps = run(model, tokenizer, prompt, top_p=p, max_new_tokens=30, seed=seed, alternatives=40)
    for step, logits in each_step(model, prompt, steps):
        probs = torch.softmax(logits, 0)
        allowed = nucleus(probs, p)
        assert len(allowed) < 0.5 * len(probs)  # the test means something: most tokens are excluded
        assert step.token_id in allowed
        for c in step.alternatives:
            expected = float(probs[c.id] / probs[list(allowed)].sum()) if c.id in allowed else 0.0
            assert c.prob == pytest.approx(expected, abs=1e-5)


# --- sampling_distribution, a pure function ------------------------------------------

LOGITS = torch.randn(40, generator=torch.Generator().manual_seed(0)) * 2


def softmax64(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    e = torch.exp((logits.double() - logits.max()) / temperature)
    return e / e.sum()


@pytest.mark.parametrize(
    "settings",
    [Sampling(), Sampling(temperature=0.3), Sampling(temperature=3), Sampling(top_k=4), Sampling(top_p=0.7),
     Sampling(temperature=0.5, top_k=10, top_p=0.9), Sampling(temperature=0), Sampling(top_k=1000, top_p=1.0)],
    ids=repr,
)
def test_distribution_sums_to_one(settings):
    probs = sampling_distribution(LOGITS, settings)
    assert probs.shape == LOGITS.shape
    assert torch.all(probs >= 0)
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("temperature", [0.25, 1.0, 2.5])
def test_temperature_scales_the_logits(temperature):
    probs = sampling_distribution(LOGITS, Sampling(temperature=temperature))
    torch.testing.assert_close(probs.double(), softmax64(LOGITS, temperature), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "settings",
    [Sampling(temperature=0), Sampling(top_k=1), Sampling(top_p=1e-6), Sampling(temperature=5, top_k=1)],
    ids=repr,
)
def test_one_hot_settings(settings):
    expected = torch.zeros(40, dtype=torch.float64)
    expected[LOGITS.argmax()] = 1
    assert torch.equal(sampling_distribution(LOGITS, settings).double(), expected)


@pytest.mark.parametrize("k", [2, 7, 39, 40])
def test_top_k_distribution(k):
    probs = sampling_distribution(LOGITS, Sampling(top_k=k, temperature=1.5))
    allowed = list(top_k_ids(LOGITS, k))
    expected = torch.zeros(40, dtype=torch.float64)
    expected[allowed] = softmax64(LOGITS, 1.5)[allowed] / softmax64(LOGITS, 1.5)[allowed].sum()
    torch.testing.assert_close(probs.double(), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.999])
def test_top_p_distribution(p):
    probs = sampling_distribution(LOGITS, Sampling(top_p=p, temperature=1.3))
    base = softmax64(LOGITS, 1.3)
    allowed = list(nucleus(base, p))
    expected = torch.zeros(40, dtype=torch.float64)
    expected[allowed] = base[allowed] / base[allowed].sum()
    torch.testing.assert_close(probs.double(), expected, atol=1e-6, rtol=1e-5)


# --- stopping and lengths ------------------------------------------------------------


@pytest.fixture(scope="module")
def eot_model(tokenizer) -> GPT:
    """A model for which <|endoftext|> has logit 100 after any context and every other
    token about 0: the final LayerNorm outputs a constant vector aligned with its row."""
    model = random_gpt(tokenizer.vocab_size)
    eot = end_of_text_id(tokenizer)
    with torch.no_grad():
        direction = torch.zeros(model.config.n_embd)
        direction[0] = 10.0
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(direction)
        model.transformer.wte.weight[eot] = direction
    return model


def test_stops_at_end_of_text(eot_model, tokenizer):
    eot = end_of_text_id(tokenizer)
    steps = run(eot_model, tokenizer, prompt_ids(tokenizer, 5), stop_at_end_of_text=True, max_new_tokens=10, seed=0)
    assert [(s.token_id, s.text) for s in steps] == [(eot, "<|endoftext|>")]
    assert steps[0].raw_prob > 0.999


def test_continues_past_end_of_text_when_asked(eot_model, tokenizer):
    steps = run(eot_model, tokenizer, prompt_ids(tokenizer, 5), stop_at_end_of_text=False, max_new_tokens=10, seed=0)
    assert [s.token_id for s in steps] == [end_of_text_id(tokenizer)] * 10


@pytest.mark.parametrize("n", [0, 1, 7, 40])
def test_max_new_tokens_and_positions(model, tokenizer, n):
    prompt = prompt_ids(tokenizer, 5)
    steps = run(model, tokenizer, prompt, max_new_tokens=n, seed=1)
    assert [s.position for s in steps] == list(range(len(prompt), len(prompt) + n))


def test_end_of_text_id(tokenizer):
    assert end_of_text_id(tokenizer) == tokenizer.vocab_size - 1
    assert end_of_text_id(TiktokenTokenizer("r50k_base")) == 50256
    assert end_of_text_id(BPETokenizer([], special_tokens=())) is None


def test_empty_prompt_starts_after_end_of_text(model, tokenizer):
    eot = end_of_text_id(tokenizer)
    from_empty = run(model, tokenizer, [], temperature=0, max_new_tokens=8)
    from_eot = run(model, tokenizer, [eot], temperature=0, max_new_tokens=8)
    assert from_empty == from_eot
    assert from_empty[0].position == 1
    assert from_empty[0].token_id == int(plain_logits(model, [eot]).argmax())


def test_empty_prompt_without_end_of_text_is_refused():
    bytes_only = BPETokenizer([], special_tokens=())
    with pytest.raises(ValueError, match="empty prompt"):
        run(random_gpt(bytes_only.vocab_size), bytes_only, [])


@pytest.mark.parametrize(
    "settings",
    [
        dict(temperature=-0.1), dict(temperature=float("nan")), dict(top_k=0), dict(top_k=-3),
        dict(top_p=0), dict(top_p=1.5), dict(top_p=-0.2), dict(max_new_tokens=-1),
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_invalid_sampling_is_refused(model, tokenizer, settings):
    with pytest.raises(ValueError):
        Sampling(**settings).check()
    with pytest.raises(ValueError):
        run(model, tokenizer, [1, 2], **settings)


# --- alternatives --------------------------------------------------------------------


@pytest.mark.parametrize("alternatives", [1, 8, 1000])
def test_alternatives_are_the_most_likely_tokens(model, tokenizer, alternatives):
    prompt = prompt_ids(tokenizer, 4)
    steps = run(model, tokenizer, prompt, max_new_tokens=20, seed=5, alternatives=alternatives)
    chosen_in_top = 0
    for step, logits in each_step(model, prompt, steps):
        probs = torch.softmax(logits, 0)
        ranked = torch.argsort(probs, descending=True)[: min(alternatives, len(probs))].tolist()
        assert [c.id for c in step.alternatives] == ranked
        raw = [c.raw_prob for c in step.alternatives]
        assert raw == sorted(raw, reverse=True)
        assert raw == pytest.approx(probs[ranked].tolist(), abs=1e-6)
        if step.token_id in ranked:
            chosen_in_top += 1
            chosen = next(c for c in step.alternatives if c.id == step.token_id)
            assert (chosen.raw_prob, chosen.prob) == (step.raw_prob, step.prob)
    assert chosen_in_top > 0


# --- text of tokens that split a character -------------------------------------------


def expected_texts(token_bytes: list[bytes], text: str) -> list[str]:
    """Each token's text: the characters of `text` whose last byte falls in that token."""
    char_ends = list(itertools.accumulate(len(ch.encode("utf-8")) for ch in text))
    token_ends = list(itertools.accumulate(len(b) for b in token_bytes))
    return [
        "".join(ch for ch, end in zip(text, char_ends) if start < end <= stop)
        for start, stop in zip([0] + token_ends, token_ends)
    ]


def test_text_of_tokens_that_split_characters(monkeypatch, tokenizer):
    """A model scripted to emit exactly the tokens of a text with accents and an emoji
    (which this Shakespeare BPE splits into single bytes)."""
    text = "héllo 🙂 wörld ∑ the end"
    script = tokenizer.encode(text)
    token_bytes = [tokenizer.token_bytes(t) for t in script]
    assert any(len(b) == 1 and b[0] >= 0x80 for b in token_bytes)  # partial characters do occur
    model = random_gpt(tokenizer.vocab_size)
    upcoming = itertools.chain(script, itertools.repeat(0))

    def scripted_next_logits(model, head, ids, cache):
        logits = torch.zeros(tokenizer.vocab_size)
        logits[next(upcoming)] = 50.0
        return logits

    monkeypatch.setattr(lm.generate, "next_logits", scripted_next_logits)
    steps = run(model, tokenizer, tokenizer.encode("Say: "), temperature=0, max_new_tokens=len(script))
    assert [s.token_id for s in steps] == script
    assert [s.token_bytes for s in steps] == token_bytes
    assert [s.text for s in steps] == expected_texts(token_bytes, text)
    assert "".join(s.text for s in steps) == text == tokenizer.decode(script)


@pytest.mark.parametrize("seed", range(3))
def test_streamed_text_matches_decoding(model, tokenizer, seed):
    """Sampling from a random model produces arbitrary bytes, often invalid UTF-8: the
    streamed texts are what an incremental decoder gives, and together with a final
    flush they are exactly the tokenizer's decoding of the generated ids."""
    steps = run(model, tokenizer, tokenizer.encode(EMOJI_PROMPT), temperature=1.5, max_new_tokens=40, seed=seed)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    assert [s.text for s in steps] == [decoder.decode(tokenizer.token_bytes(s.token_id)) for s in steps]
    assert "".join(s.text for s in steps) + decoder.decode(b"", final=True) == tokenizer.decode([s.token_id for s in steps])
    assert any(s.text == "" for s in steps)  # some token ended mid-character
