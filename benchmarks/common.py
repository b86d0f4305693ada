"""What the benchmark scripts share: working offline from ../shared/data, the
transformers GPT-2 they measure against, and how two timed sides are compared."""

from __future__ import annotations

import atexit
import os
import shutil
import statistics
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def offline_tiktoken_cache() -> None:
    """Point tiktoken at a temp copy of ../shared/data/tiktoken unless the caller chose a cache."""
    source = REPO.parent / "shared" / "data" / "tiktoken"
    if "TIKTOKEN_CACHE_DIR" not in os.environ and source.is_dir():
        tmp = tempfile.mkdtemp(prefix="tiktoken-")
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        copy = Path(tmp) / "cache"
        shutil.copytree(source, copy)
        os.environ["TIKTOKEN_CACHE_DIR"] = str(copy)


def transformers_gpt2(ours):
    """transformers' GPT2LMHeadModel of `ours`'s size (sdpa attention, no dropout) holding a copy of
    its weights: same names, same [in, out] layout, head tied to the token embedding."""
    from transformers import GPT2Config, GPT2LMHeadModel

    c = ours.config
    config = GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer,
                        n_head=c.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=None, eos_token_id=None)
    try:
        hf = GPT2LMHeadModel(config, attn_implementation="sdpa")
    except (ValueError, ImportError, TypeError):
        hf = GPT2LMHeadModel(config)
    missing, unexpected = hf.load_state_dict({k: v.clone() for k, v in ours.state_dict().items()}, strict=False)
    missing = [m for m in missing if m != "lm_head.weight"]  # tied to wte on both sides
    if missing or unexpected:
        raise SystemExit(f"error: our weights do not fit HF's GPT-2: missing {missing[:3]}, unexpected {unexpected[:3]}")
    hf.tie_weights()
    if hf.lm_head.weight.data_ptr() != hf.transformer.wte.weight.data_ptr():
        raise SystemExit("error: HF's head is not tied to its token embedding")
    return hf


def paired_ratio(rounds: dict[str, list[float]], slow: str, fast: str) -> float:
    """How many times faster `fast` ran than `slow`: the median over the rounds of their seconds'
    ratio within a round. Both were timed in the same round (paired), so a burst of load on a
    shared machine mostly cancels, where a ratio of the two sides' bests would keep it."""
    return statistics.median(s / f for s, f in zip(rounds[slow], rounds[fast], strict=True))
