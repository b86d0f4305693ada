"""The synthetic instruction set's design choices that made every seed learn it (lm.finetune.synthetic):
instructions told apart by words, not by lone letters, and fine-tuning on it without dropout."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import torch

from lm.finetune.config import FinetuneConfig
from lm.finetune.loop import FinetuneRun
from lm.finetune.synthetic import OPERATIONS, synthetic_examples
from lm.tokenizer import load_tokenizer
from tests.checkpoints import make_checkpoint

DEMO_TOKENIZER = Path(__file__).resolve().parents[1] / "models" / "shakespeare-demo" / "tokenizer.json"


def test_copy_and_reverse_differ_in_words_not_in_the_puzzles_letter_tokens():
    """Copying and reversing answer with the same letters; only the instruction says which order. With
    "Copy" (C, o, p, y) the telling tokens were the puzzles' own letter tokens, and seed 1 mixed the two up."""
    tokenizer = load_tokenizer(DEMO_TOKENIZER)
    letters = {tokenizer.encode(c)[0] for c in string.ascii_letters}
    assert all(len(tokenizer.encode(c)) == 1 for c in string.ascii_letters)
    copy, reverse = (set(tokenizer.encode(OPERATIONS[name][0])) for name in ("repeat", "reverse"))
    telling = copy ^ reverse
    assert telling and not telling & letters
    example = synthetic_examples(seed=3)[0]  # and the puzzles' letters are those tokens, in input and answer
    assert set(tokenizer.encode(example.input)) <= letters | {tokenizer.encode("-")[0]}


def dropouts(model) -> set[float]:
    return {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} | {
        m.dropout for m in model.modules() if isinstance(getattr(m, "dropout", None), float)}


def test_the_synthetic_set_trains_without_dropout_and_other_data_keeps_the_checkpoints(tmp_path):
    source = make_checkpoint(tmp_path / "source", block_size=48, dropout=0.1)
    synthetic = FinetuneRun(FinetuneConfig(method="instruct", source=str(source), out=str(tmp_path / "a"),
                                           data="synthetic"))
    assert synthetic.cfg.dropout == 0.0 and dropouts(synthetic.model) == {0.0}
    assert synthetic.model.config.dropout == 0.0  # the saved checkpoint says how it trained
    chosen = FinetuneRun(FinetuneConfig(method="instruct", source=str(source), out=str(tmp_path / "b"),
                                        data="synthetic", dropout=0.2))
    assert dropouts(chosen.model) == {0.2}
    kept = FinetuneRun(FinetuneConfig(method="continue", source=str(source), out=str(tmp_path / "c"),
                                      data=str(_text(tmp_path))))
    assert kept.cfg.dropout is None and dropouts(kept.model) == {0.1}
    with pytest.raises(ValueError, match="dropout must be"):
        FinetuneConfig(method="instruct", source=str(source), dropout=1.0).resolved()


def _text(tmp_path: Path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text("the cat sat on the mat. " * 100, encoding="utf-8")
    return path
