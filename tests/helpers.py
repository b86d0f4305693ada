"""Small helpers the test modules share: a tiny run's settings, a strict JSONL reader
(independent of lm.run_folder's, which it checks), and a poll with a deadline."""

from __future__ import annotations

import json
import time
from pathlib import Path

# One layer, 32 wide, a 320-token BPE: a run of 40 steps trains in seconds on one thread.
TINY_RUN = dict(
    tokenizer="bpe:320", n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=4, max_steps=40, warmup_steps=5,
    log_every=2, eval_every=10, eval_batches=2, sample_every=10, sample_tokens=10, device="cpu", threads=1,
)


def read_jsonl(path: str | Path) -> list[dict]:
    """Every line as JSON: a half-written line fails the test instead of being skipped."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def wait_for(predicate, timeout: float = 120.0, every: float = 0.05):
    """Poll until `predicate()` is truthy and return its value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"still waiting after {timeout} s")
