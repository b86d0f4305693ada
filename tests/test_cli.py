"""`python -m lm`: the commands a student runs in a terminal."""

import subprocess
import sys

import pytest
import tiktoken

from lm.__main__ import main
from lm.tokenizer import load_tokenizer
from tests.checkpoints import make_checkpoint


def test_tokenize_prints_gpt2_ids(capsys):
    assert main(["tokenize", "--ids", "Hello 🦙 world"]) == 0
    printed = capsys.readouterr().out.split()
    assert list(map(int, printed)) == tiktoken.get_encoding("r50k_base").encode("Hello 🦙 world")


def test_train_tokenizer_writes_a_loadable_file(tmp_path, shakespeare_text):
    corpus = tmp_path / "slice.txt"
    corpus.write_text(shakespeare_text[:50_000], encoding="utf-8")
    out = tmp_path / "bpe.json"
    assert main(["train-tokenizer", "--data", str(corpus), "--vocab-size", "400", "--out", str(out)]) == 0
    tokenizer = load_tokenizer(out)
    assert tokenizer.vocab_size == 400
    assert tokenizer.decode(tokenizer.encode(shakespeare_text[:2000])) == shakespeare_text[:2000]


def test_bad_input_exits_1_with_a_message(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("not json")
    assert main(["tokenize", "--tokenizer", str(tmp_path / "bad.json"), "hi"]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["train-tokenizer", "--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "x.json")]) == 1
    assert "no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_module_runs_as_a_program():
    result = subprocess.run([sys.executable, "-m", "lm", "--help"], capture_output=True, text=True, check=True)
    for command in ("download", "tokenize", "train-tokenizer"):
        assert command in result.stdout


def test_resuming_a_folder_that_was_not_trained_says_so(tmp_path, capsys):
    folder = make_checkpoint(tmp_path / "imported")  # a model folder without a training config, as GPT-2's
    assert main(["train", "--resume", "--out", str(folder)]) == 1
    assert "was not written by training" in capsys.readouterr().err
