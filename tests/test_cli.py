"""`python -m lm`: the commands a student runs in a terminal."""

import io
import json
import re
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


def cli_error(capsys, *argv: str) -> str:
    """The one line `python -m lm ARGV` prints on stderr when it refuses (exit code 1, no traceback)."""
    assert main(list(argv)) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    "options, message",
    [
        (["--batch-size", "100000000"], "with a batch of 100000000 sequences this needs about"),
        (["--n-layer", "1000000", "--n-embd", "8", "--n-head", "2"], "at most 128 layers"),
        (["--data", "FOLDER"], "is a folder, not a text file"),
        (["--data", "/dev/zero"], "/dev/zero is not a regular file"),
        (["--device", "cuda:99"], "this machine has no device 'cuda:99'"),
        (["--tokenizer", "bpe:many"], "bpe:N needs a whole number N"),
    ],
)
def test_train_refuses_before_any_work(tmp_path, capsys, options, message):
    out = tmp_path / "run"
    options = [str(tmp_path) if o == "FOLDER" else o for o in options]
    data = [] if "--data" in options else ["--data", "task:copy"]
    tokenizer_run = ["--data", str(tmp_path / "text.txt")] if "--tokenizer" in options else []
    (tmp_path / "text.txt").write_text("hello " * 100)
    assert message in cli_error(capsys, "train", *(tokenizer_run or data), *options, "--out", str(out), "--max-steps", "1")
    assert not out.exists() or "--data" in options  # refused before the run folder was made; a text is read in it


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2]", "must hold training options by name"),
        ("{not json", "is not valid JSON"),
        (b"\xff\xfe{}", "config file: the file is UTF-16"),
        (None, "config file: .* is a folder"),
    ],
)
def test_a_bad_config_file_says_what_is_wrong(tmp_path, capsys, content, message):
    path = tmp_path / "options.json"
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert re.search(message, cli_error(capsys, "train", "--config", str(path), "--out", str(tmp_path / "run")))


def test_tokenize_refuses_stdin_that_is_not_utf8(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ab\xff\xfecd")))
    assert "standard input: the text is not UTF-8: byte 0xFF at position 2" in cli_error(capsys, "tokenize", "-")


def test_a_checkpoint_config_without_a_size_names_it(tmp_path, capsys):
    folder = make_checkpoint(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    del config["model"]["n_embd"]  # once silently 384, failing later on the weights' shapes
    (folder / "config.json").write_text(json.dumps(config))
    assert "the model config has no n_embd" in cli_error(capsys, "sample", "--checkpoint", str(folder))
