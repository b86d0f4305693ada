"""generate(explain=False): the plain path gives the very tokens and texts the explained one does,
and skips the explanation; a cached step runs its blocks on one thread, touching no other thread."""

from __future__ import annotations

import threading

import pytest
import torch

from lm import generate as generation
from lm.generate import BrokenModelError, Sampling, generate, one_thread
from lm.tokenizer import TiktokenTokenizer
from tests.checkpoints import tiny_gpt


@pytest.fixture(scope="module")
def tokenizer():
    return TiktokenTokenizer("r50k_base")


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_gpt(tokenizer.vocab_size, seed=3, sharpen=8.0)


SETTINGS = [
    dict(temperature=0),
    dict(temperature=1.0, seed=7),
    dict(temperature=0.8, top_k=20, seed=1),
    dict(temperature=1.2, top_p=0.9, seed=2),
]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("use_cache", [True, False])
def test_plain_steps_are_the_explained_ones_without_the_why(model, tokenizer, settings, use_cache):
    prompt = tokenizer.encode("The cat")
    sampling = Sampling(max_new_tokens=40, stop_at_end_of_text=False, **settings)  # past the context of 32: the window slides
    plain = list(generate(model, tokenizer, prompt, sampling, use_cache=use_cache, explain=False))
    explained = list(generate(model, tokenizer, prompt, sampling, use_cache=use_cache))
    assert len(plain) == len(explained) == 40
    for p, e in zip(plain, explained):
        assert (p.position, p.token_id, p.token_bytes, p.text) == (e.position, e.token_id, e.token_bytes, e.text)
        assert p.raw_prob is None and p.prob is None and p.alternatives == []
        assert 0 < e.raw_prob <= 1 and 0 < e.prob <= 1 and len(e.alternatives) == 10


def test_the_plain_path_computes_no_explanation(model, tokenizer, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the plain path explained a step")

    monkeypatch.setattr(generation, "explained", refuse)
    steps = list(generate(model, tokenizer, [5], Sampling(temperature=0, max_new_tokens=5), explain=False))
    assert len(steps) == 5
    with pytest.raises(AssertionError, match="explained a step"):
        next(generate(model, tokenizer, [5], Sampling(temperature=0, max_new_tokens=5)))


@pytest.mark.parametrize("temperature", [0, 1.0])
def test_the_plain_path_refuses_a_broken_model(tokenizer, temperature):
    broken = tiny_gpt(tokenizer.vocab_size, seed=0)
    with torch.no_grad():
        broken.transformer.ln_f.weight.fill_(float("nan"))
    with pytest.raises(BrokenModelError, match="not numbers"):
        next(generate(broken, tokenizer, [5], Sampling(temperature=temperature, seed=0), explain=False))


def test_the_kept_head_follows_the_weights(tokenizer):
    model = tiny_gpt(tokenizer.vocab_size, seed=5)
    head = generation.readout(model, tokenizer.vocab_size)
    assert head.packed is None  # LM_CPU_BF16=0 (tests/conftest.py): fp32 on every CPU
    assert generation.readout(model, tokenizer.vocab_size) is head  # kept while the weights stay
    torch.testing.assert_close(head.columns, model.lm_head.weight[: tokenizer.vocab_size].t())
    with torch.no_grad():
        model.lm_head.weight.mul_(2)  # in place, as an optimizer step changes it
    changed = generation.readout(model, tokenizer.vocab_size)
    assert changed is not head
    torch.testing.assert_close(changed.columns, model.lm_head.weight[: tokenizer.vocab_size].t())
    assert generation.readout(model, 100).columns.shape == (model.config.n_embd, 100)


def test_a_cached_step_runs_its_blocks_on_one_thread_and_gives_the_caller_its_threads_back(model, tokenizer):
    prompt = tokenizer.encode("The cat")
    sampling = Sampling(temperature=0, max_new_tokens=6, stop_at_end_of_text=False)
    on_one_thread = [token.token_id for token in generate(model, tokenizer, prompt, sampling, explain=False)]
    seen = []  # (positions in the pass, threads while block 0 runs)

    def count_threads(block, inputs, output):
        seen.append((inputs[0].size(1), torch.get_num_threads()))

    hook = model.transformer.h[0].register_forward_hook(count_threads)
    torch.set_num_threads(2)  # tests/conftest.py sets 1 for each test and restores the count after
    try:
        ids = []
        for step in generate(model, tokenizer, prompt, sampling, explain=False):
            assert torch.get_num_threads() == 2  # between steps, the caller's own count
            ids.append(step.token_id)
    finally:
        hook.remove()
    assert ids == on_one_thread
    assert seen == [(len(prompt), 2)] + [(1, 1)] * 5  # the prompt's pass on the caller's threads, each token's on one
    assert torch.get_num_threads() == 2


def test_one_thread_leaves_a_running_thread_its_count():
    torch.set_num_threads(2)
    started, go, seen = threading.Event(), threading.Event(), []

    def other_session():
        seen.append(torch.get_num_threads())  # its first parallel call: it takes the process's count, 2
        started.set()
        go.wait(timeout=10)
        seen.append(torch.get_num_threads())

    other = threading.Thread(target=other_session)
    other.start()
    started.wait(timeout=10)
    with one_thread():
        assert torch.get_num_threads() == 1
        go.set()
        other.join(timeout=10)
    assert seen == [2, 2]
    assert torch.get_num_threads() == 2


def test_one_thread_gives_the_count_back_when_the_pass_fails():
    """A step that raises (a context overrun, a broken model) must not leave its thread on one."""
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError, match="broken"), one_thread():
        assert torch.get_num_threads() == 1
        raise RuntimeError("broken")
    assert torch.get_num_threads() == 2
