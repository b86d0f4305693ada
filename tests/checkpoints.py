"""Small random checkpoints for tests: a real folder in the real format, built in milliseconds."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import save_file

from lm.checkpoint import save_checkpoint
from lm.detectors import scores_from_weights
from lm.model import GPT, GPTConfig
from lm.tokenizer import BPETokenizer
from tests.conftest import SHAKESPEARE_FILE


@lru_cache(maxsize=None)
def shakespeare_bpe(vocab_size: int = 320) -> BPETokenizer:
    return BPETokenizer.train(SHAKESPEARE_FILE.read_text(encoding="utf-8")[:60_000], vocab_size)


def text_and_bpe(folder: Path, text: str) -> dict:
    """A training text and the Shakespeare BPE as files, as `lm train --data --tokenizer` take them."""
    (folder / "text.txt").write_text(text, encoding="utf-8")
    shakespeare_bpe().save(folder / "bpe.json")
    return dict(data=str(folder / "text.txt"), tokenizer=str(folder / "bpe.json"))


def tiny_gpt(vocab_size: int, seed: int = 0, sharpen: float = 1.0, **config) -> GPT:
    """A randomly initialised GPT in eval mode (default 2 layers, 2 heads, 32 wide, context 32).
    `sharpen` scales its final LayerNorm, spreading its next-token distributions (at 1 they
    are almost uniform)."""
    settings = dict(vocab_size=vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32) | config
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**settings)).eval()
    with torch.no_grad():
        model.transformer.ln_f.weight.mul_(sharpen)
    return model


def sharpen_attention(model: GPT, gain: float) -> GPT:
    """Scale the attention's q/k/v weights by `gain` and give every bias random values: at
    initialisation attention is nearly uniform and biases are zero, which would hide mistakes."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("c_attn.weight"):
                p.mul_(gain)
            elif name.endswith(".bias"):
                p.normal_(0.0, 0.1)
    return model


def make_checkpoint(folder: Path, seed: int = 0, tokenizer=None, **config) -> Path:
    """`tiny_gpt` saved with a small Shakespeare BPE, or with `tokenizer` (e.g. a TiktokenTokenizer)."""
    tokenizer = tokenizer or shakespeare_bpe()
    model = tiny_gpt(**{"vocab_size": tokenizer.vocab_size} | config, seed=seed)  # a test may ask for a smaller one
    return save_checkpoint(folder, model, tokenizer, {"note": "random weights, for tests"})


def write_snapshots(folder: Path, steps=(0, 50, 100), n_layer: int = 2, n_head: int = 2) -> list[torch.Tensor]:
    """Attention snapshots in a run folder, as the trainer writes them (probe.json, attention/,
    detectors.jsonl, metrics.jsonl), built by hand: layer 0's head 0 turns from spreading its
    attention evenly into a previous-token head as training goes, every other head stays
    even, the loss falls. Returns each step's [n_layer, n_head, T, T] attention."""
    tokens = ["A", " cat", " sat", ".", " A", " cat", " sat", "."]
    ids = [10, 11, 12, 13, 10, 11, 12, 13]
    T = len(ids)
    even = torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]
    previous = torch.diag(torch.ones(T - 1), -1)
    previous[0, 0] = 1.0
    (folder / "attention").mkdir(parents=True, exist_ok=True)
    (folder / "probe.json").write_text(json.dumps({"ids": ids, "tokens": tokens}))
    snapshots, detector_lines, metric_lines = [], [], []
    for step in steps:
        learned = step / max(steps)
        weights = even.repeat(n_layer, n_head, 1, 1)
        weights[0, 0] = (1 - learned) * even + learned * previous
        save_file({"attention": weights.half()}, folder / "attention" / f"step_{step:07d}.safetensors")
        scores = scores_from_weights(weights, ids, weights, ids)
        detector_lines.append(json.dumps({"step": step, "scores": {k: v.tolist() for k, v in scores.items()}}))
        metric_lines.append(json.dumps({"step": step, "train_loss": 5.0 - 3 * learned, "val_loss": 5.2 - 3 * learned}))
        snapshots.append(weights)
    (folder / "detectors.jsonl").write_text("\n".join(detector_lines) + "\n")
    (folder / "metrics.jsonl").write_text("\n".join(metric_lines) + "\n")
    return snapshots
