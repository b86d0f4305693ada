"""Small random checkpoints for tests: a real folder in the real format, built in milliseconds."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from lm.checkpoint import save_checkpoint
from lm.model import GPT, GPTConfig
from lm.tokenizer import BPETokenizer
from tests.conftest import SHAKESPEARE_FILE


@lru_cache(maxsize=None)
def shakespeare_bpe(vocab_size: int = 320) -> BPETokenizer:
    return BPETokenizer.train(SHAKESPEARE_FILE.read_text(encoding="utf-8")[:60_000], vocab_size)


def make_checkpoint(folder: Path, seed: int = 0, tokenizer=None, **config) -> Path:
    """A randomly initialised GPT (default 2 layers, 2 heads, 32 wide, context 32) saved with
    a small Shakespeare BPE, or with `tokenizer` (e.g. a TiktokenTokenizer)."""
    tokenizer = tokenizer or shakespeare_bpe()
    settings = dict(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32) | config
    torch.manual_seed(seed)
    return save_checkpoint(folder, GPT(GPTConfig(**settings)), tokenizer, {"note": "random weights, for tests"})
