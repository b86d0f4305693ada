"""The synthetic instruction set's design choices that made every seed learn it (lm.finetune.synthetic):
instructions told apart by words, not by lone letters, and fine-tuning on it without dropout."""

from __future__ import annotations

import string
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from lm.attention import CausalSelfAttention
from lm.checkpoint import save_checkpoint
from lm.finetune.config import FinetuneConfig
from lm.finetune.loop import FinetuneRun, resume_settings, set_dropout
from lm.finetune.synthetic import OPERATIONS, synthetic_examples
from lm.tokenizer import load_tokenizer
from tests.checkpoints import make_checkpoint, shakespeare_bpe, tiny_gpt

DEMO_TOKENIZER = Path(__file__).resolve().parents[1] / "models" / "shakespeare-demo" / "tokenizer.json"


def test_copy_and_reverse_differ_in_whole_words_not_only_in_letters():
    """Copying and reversing answer with the same letters; only the instruction says which order. With
    "Copy" and "Reverse" (C, o, p, y against R, e, ver, se) no whole word told them apart, and seed 1
    mixed the two up."""
    tokenizer = load_tokenizer(DEMO_TOKENIZER)
    letters = {tokenizer.encode(c)[0] for c in string.ascii_letters}
    assert all(len(tokenizer.encode(c)) == 1 for c in string.ascii_letters)

    def telling_words(copy: str, reverse: str) -> set[str]:
        differ = set(tokenizer.encode(copy)) ^ set(tokenizer.encode(reverse))
        return {text for text in map(tokenizer.decode, [[t] for t in differ]) if text[:1] == " " and len(text) > 2}

    assert telling_words(OPERATIONS["repeat"][0], OPERATIONS["reverse"][0])
    assert not telling_words("Copy the letters.", "Reverse the letters.")
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


def test_set_dropout_reaches_attentions_own_probability_whatever_the_configs_number_type():
    model = tiny_gpt(64, dropout=0)  # an int, as a hand-written config.json may hold
    set_dropout(model, 0.2)
    assert {m.dropout for m in model.modules() if isinstance(m, CausalSelfAttention)} == {0.2}
    assert dropouts(model) == {0.2} and model.config.dropout == 0.2


def test_a_run_from_before_the_dropout_option_resumes_with_the_dropout_it_trained_with(tmp_path):
    settings = asdict(FinetuneConfig(method="instruct", source="m", data="synthetic").resolved())
    del settings["dropout"]  # no such option then: the run trained with its checkpoint's own
    save_checkpoint(tmp_path / "old", tiny_gpt(64, dropout=0.1), shakespeare_bpe(), {"finetune": {"settings": settings}})
    assert resume_settings(str(tmp_path / "old")).resolved().dropout == 0.1
    settings["dropout"] = 0.2  # a run since: its settings say
    save_checkpoint(tmp_path / "new", tiny_gpt(64, dropout=0.1), shakespeare_bpe(), {"finetune": {"settings": settings}})
    assert resume_settings(str(tmp_path / "new")).resolved().dropout == 0.2


def _text(tmp_path: Path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text("the cat sat on the mat. " * 100, encoding="utf-8")
    return path
