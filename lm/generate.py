"""Sampling, one token at a time, with the reasons for each choice.

Each step: run the model on what it has not seen yet (with a KV cache, only the
newest token), turn the last position's logits into probabilities, reshape them
with temperature, top-k and top-p, and draw the next token. The model always
sees the last `block_size` tokens: past its context the window slides and the
whole window is recomputed, since every position embedding shifts."""

from __future__ import annotations

import codecs
import contextlib
import math
from dataclasses import dataclass, field, replace
from typing import Iterator

import torch

from lm.attention import KVCache, Probe
from lm.model import GPT
from lm.readout import Readout, readout
from lm.tokenizer import ENDOFTEXT


class BrokenModelError(ValueError):
    """The model computes NaN or infinity (its weights are, as after a run whose loss blew up)."""


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0  # 0 = greedy: always the most likely token
    top_k: int | None = None  # keep only the k most likely tokens
    top_p: float | None = None  # keep the smallest set whose probability reaches p
    max_new_tokens: int = 100
    seed: int | None = None
    stop_at_end_of_text: bool = True

    def check(self) -> "Sampling":
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError("temperature must be 0 (greedy) or more")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError("top_k must be at least 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:  # also refuses NaN
            raise ValueError("top_p must be in (0, 1]")
        if self.max_new_tokens < 0:
            raise ValueError("max_new_tokens must be 0 or more")
        return self


@dataclass(frozen=True)
class Candidate:
    id: int
    raw_prob: float  # the model's probability (softmax of its logits)
    prob: float  # after temperature, top-k and top-p (0 if filtered out)


@dataclass(frozen=True)
class Step:
    position: int  # index of this token in prompt + generated ids
    token_id: int
    token_bytes: bytes
    text: str  # the characters this token completes (may be empty mid-character)
    # Why it was chosen, when generate() is asked to explain (else None, None, []):
    raw_prob: float | None = None
    prob: float | None = None
    alternatives: list[Candidate] = field(default_factory=list)  # the most likely tokens by the model's own probabilities


def sampling_distribution(logits: torch.Tensor, settings: Sampling) -> torch.Tensor:
    """Probabilities over the vocabulary after temperature, top-k and top-p (a pure function)."""
    logits = logits.float()
    if settings.temperature == 0:
        probs = torch.zeros_like(logits)
        probs[logits.argmax()] = 1.0
        return probs
    probs = torch.softmax(logits / settings.temperature, dim=-1)
    if settings.top_k is not None and settings.top_k < probs.numel():
        kth = torch.topk(probs, settings.top_k).values[-1]
        probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
    if settings.top_p is not None and settings.top_p < 1:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_probs, dim=0) - sorted_probs  # mass of the tokens ranked above
        keep = torch.zeros_like(probs, dtype=torch.bool)
        keep[order] = before < settings.top_p * sorted_probs.sum()
        probs = torch.where(keep, probs, torch.zeros_like(probs))
    return probs / probs.sum()


@torch.no_grad()
def generate(
    model: GPT,
    tokenizer,
    prompt_ids: list[int],
    settings: Sampling = Sampling(),
    use_cache: bool = True,
    alternatives: int = 10,
    explain: bool = True,
) -> Iterator[Step]:
    """The steps of one continuation. With `explain`, each step also says why its token was
    chosen (its probabilities and the top `alternatives`), what the app shows; without, a step
    is the token and its text, the least work per token (the CLI, samples during training):
    the same tokens either way, for the same seed."""
    settings.check()
    model.eval()
    block_size = model.config.block_size
    end_id = end_of_text_id(tokenizer)
    ids = list(prompt_ids) or ([end_id] if end_id is not None else [])
    if not ids:
        raise ValueError("an empty prompt needs a tokenizer with <|endoftext|> to start from")
    generator = torch.Generator(device="cpu")
    if settings.seed is not None:
        generator.manual_seed(settings.seed)
    else:
        generator.seed()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    if settings.max_new_tokens == 0:
        return
    cache = KVCache(model.config.n_layer, model.config.block_size) if use_cache else None
    head = readout(model, tokenizer.vocab_size)
    logits = next_logits(model, head, ids[-block_size:], cache)
    for produced in range(1, settings.max_new_tokens + 1):
        best = logits.max(dim=0)  # the most likely token, greedy's choice; NaN if any logit is NaN
        if not math.isfinite(best.values):  # NaN would be drawn from (a RuntimeError) or argmax'd into nonsense
            raise BrokenModelError(
                "this model's outputs are not numbers (NaN or infinity): its weights are broken, as after a "
                "training run whose loss blew up. Choose another model or an earlier checkpoint."
            )
        probs = None if settings.temperature == 0 else sampling_distribution(logits, settings)
        token = int(best.indices) if probs is None else int(torch.multinomial(probs.cpu(), 1, generator=generator))
        token_bytes = tokenizer.token_bytes(token)
        step = Step(position=len(ids), token_id=token, token_bytes=token_bytes, text=decoder.decode(token_bytes))
        yield explained(step, logits, probs, settings, alternatives) if explain else step
        ids.append(token)
        if produced == settings.max_new_tokens or (settings.stop_at_end_of_text and token == end_id):
            return
        if cache is not None and len(ids) <= block_size:
            logits = next_logits(model, head, [token], cache)
        else:  # no cache, or the window slid: every position moved
            logits = next_logits(model, head, ids[-block_size:], None)


def explained(step: Step, logits: torch.Tensor, probs: torch.Tensor | None, settings: Sampling, alternatives: int) -> Step:
    """The step with why it was chosen: the model's own probability of the token, the one it was
    drawn with (after temperature, top-k, top-p), and the most likely tokens with both."""
    raw = torch.softmax(logits.float(), dim=-1)
    if probs is None:
        probs = sampling_distribution(logits, settings)
    top = torch.topk(raw, min(alternatives, raw.numel()))
    candidates = [Candidate(i, r, p) for i, r, p in zip(top.indices.tolist(), top.values.tolist(), probs[top.indices].tolist())]
    return replace(step, raw_prob=float(raw[step.token_id]), prob=float(probs[step.token_id]), alternatives=candidates)


def next_logits(model: GPT, head: Readout, ids: list[int], cache: KVCache | None) -> torch.Tensor:
    """Logits for the token after `ids`: only the last position goes through the head. A single
    token's pass through the blocks runs on one CPU thread (one_thread); the head, 50,257 columns
    at GPT-2's vocabulary, splits well and keeps the caller's threads."""
    idx = torch.tensor([ids], device=head.weight.device)
    with one_thread() if len(ids) == 1 and idx.device.type == "cpu" else contextlib.nullcontext():
        x, _, _ = model.hidden(idx, Probe(cache=cache))
    return head.logits(x[0, -1])


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """PyTorch's CPU operations on one thread inside, the caller's count restored after. A one-token
    pass through the blocks is many small operations: a second thread speeds none of them (the
    blocks' pass took 2.7 ms at 1 or 2 threads at GPT-2-tiny's shape), and handing each one's half
    over to it and waiting for it back costs time, much more when other processes hold the cores
    (on a loaded 2-core machine a cached token took 47 ms at 2 threads, 86 ms without this, median).
    The head's one product is big enough to split: 0.4 ms at 2 threads against 1.0 at 1.
    torch.set_num_threads sets the calling thread's OpenMP count and the count a thread takes at
    its first parallel operation: threads already running keep theirs (tests/test_generate_lean.py
    checks it), so other sessions of a server are untouched, except one whose thread makes its
    very first parallel operation inside this window, which keeps one thread for its life."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def end_of_text_id(tokenizer) -> int | None:
    """<|endoftext|>'s id when the tokenizer has it as a special token."""
    ids = tokenizer.encode(ENDOFTEXT)
    return ids[0] if len(ids) == 1 else None
