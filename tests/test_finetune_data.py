"""Fine-tuning data: the registered sets (downloaded from a local mirror, the SMS set out of
a zip), uploads with field-level errors, the balanced split, the template and the loss mask."""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from urllib.parse import urlsplit

import pytest
import torch

from lm.__main__ import main
from lm.data import DataError
from lm.finetune.data import (
    DATASETS, Example, balanced_split, fetch_dataset, format_prompt, load_classification, load_instructions,
    load_preferences, parse_sms, response_mask,
)
from lm.finetune.prompts import length_batches, pad_batch
from lm.finetune.synthetic import LENGTH, OPERATIONS, SIZE, operation, synthetic_examples
from tests.checkpoints import make_checkpoint, shakespeare_bpe
from tests.conftest import SHARED_DATA
from tests.offline import empty_caches, redirect_requests, serve_folder  # noqa: F401 (fixture)

FINETUNE = SHARED_DATA / "finetune"


@pytest.fixture
def datasets_mirror(tmp_path, monkeypatch):
    """The three sets served at their URLs' paths on 127.0.0.1 (the SMS file inside a zip, as UCI
    serves it, beside a readme); yields the server's root."""
    root = tmp_path / "www"
    for dataset in DATASETS.values():
        target = root / urlsplit(dataset.url).path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if dataset.member:
            with zipfile.ZipFile(target, "w") as archive:
                archive.write(FINETUNE / dataset.filename, dataset.member)
                archive.writestr("readme", "the collection's readme")
        else:
            target.write_bytes((FINETUNE / dataset.filename).read_bytes())
    with serve_folder(root) as (port, _):
        redirect_requests(monkeypatch, port)
        yield root


def test_registered_sets_download_verify_and_load(datasets_mirror):
    progress = []
    path = fetch_dataset("sms-spam", progress=lambda done, total: progress.append(done))
    assert path.read_bytes() == (FINETUNE / "SMSSpamCollection").read_bytes()
    assert progress and not any(path.parent.glob("*.zip"))  # the archive is not kept
    spam = load_classification("sms-spam")
    assert len(spam) == 5574 and Counter(e.label for e in spam) == {"ham": 4827, "spam": 747}
    instructions = load_instructions("instructions")
    assert len(instructions) == 1100 and instructions[0].output.startswith("The spelling")
    preferences = load_preferences("preferences")
    assert len(preferences) == 1100 and all(p.chosen and p.rejected for p in preferences)


def test_a_zip_without_the_right_file_is_refused(datasets_mirror):
    dataset = DATASETS["sms-spam"]
    with zipfile.ZipFile(datasets_mirror / urlsplit(dataset.url).path.lstrip("/"), "w") as archive:
        archive.writestr(dataset.member, "ham\tnot the real collection\n")
    with pytest.raises(DataError, match="not the expected file"):
        fetch_dataset("sms-spam")
    assert not dataset.file.path.exists()


def test_offline_download_says_what_to_do(no_network):
    with pytest.raises(DataError, match="Could not download SMS Spam Collection.*upload your own"):
        load_classification("sms-spam")


def test_a_set_of_the_wrong_kind_is_refused():
    with pytest.raises(DataError, match="preference data set; this needs a classify one"):
        load_classification("preferences")


def test_csv_and_tsv_uploads(tmp_path):
    (tmp_path / "a.csv").write_text('label,text\nspam,"WIN a prize, call now"\nham,see you at 5\n', encoding="utf-8")
    (tmp_path / "a.tsv").write_text("text\tlabel\nWIN now\tspam\nlunch?\tham\n", encoding="utf-8")
    assert [(e.text, e.label) for e in load_classification(tmp_path / "a.csv")] == [
        ("WIN a prize, call now", "spam"), ("see you at 5", "ham")]
    assert [e.label for e in load_classification(tmp_path / "a.tsv")] == ["spam", "ham"]


@pytest.mark.parametrize("content, message", [
    ("text,label\nhello,\n,spam\nfine,ham\n", "row 2: no label; row 3: no text"),
    ("message,class\nhi,ham\n", "no text and no label"),
    ("text,label\nhi,ham\nyo,ham\n", "at least two labels"),
    ("text,label\n", "no rows"),
    ("text,label\nhi, there,ham\nfine,spam,\n", r"row 2: 3 fields but the header names 2 \(put a text holding ',' in"),
])
def test_malformed_tables_name_the_rows(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_classification(tmp_path / "bad.csv")


NEVER_CLOSED = "is never closed, so the rest of the file became its text"


@pytest.mark.parametrize("name, content, message", [
    ("a.csv", 'text,label\nhi,ham\n"WIN now, spam\nbye,ham\nyo,spam\n', f"row 3: the double quote opened on line 3 {NEVER_CLOSED}"),
    ("a.csv", 'text,label\r\nhi,ham\r\n\r\n"WIN now,spam\r\nbye,ham\r\n', f"row 3: the double quote opened on line 4 {NEVER_CLOSED}"),
    ("a.tsv", 'text\tlabel\nhi\tham\nyo\tspam\n"WIN now\tspam\n', f"row 4: the double quote opened on line 4 {NEVER_CLOSED}"),
    ("a.csv", 'text,label\rhi,ham\r"WIN now,spam\rbye,ham\r', f"row 3: the double quote opened on line 3 {NEVER_CLOSED}"),
    ("a.csv", 'text,label\nhi,ham\n"WIN,spam\nbye,ham\n"a, b",spam\nyo,ham\n',
     "row 3: the double quote opened on line 3 closes only on line 5, so those lines were read as one row "
     r"\(3 fields but the header names 2\)"),
    ("a.csv", 'text,label\nhi,ham\n"WIN now,spam\n' + "bye,ham\n" * 20_000,
     "row 3: the double quote opened on line 3 is not closed within 131,072 characters"),
])
def test_a_stray_quote_is_named_as_the_cause(tmp_path, name, content, message):
    """An opening quote never closed swallows the rest of the file: the row was reported as having
    no label, which is true but sends the reader to the wrong line and the wrong fix."""
    (tmp_path / name).write_text(content, encoding="utf-8", newline="")
    with pytest.raises(DataError, match=f"^the table cannot be used: {message}") as error:
        load_classification(tmp_path / name)
    assert "no label" not in str(error.value)


@pytest.mark.parametrize("rows", [2, 20_000])  # the rest of the file within csv's field limit, and over it
def test_a_stray_quote_in_the_header_is_named_as_the_cause(tmp_path, rows):
    """It made the whole file one column name (listed in the message), or a csv.Error the page did not catch."""
    (tmp_path / "a.csv").write_text('"text,label\n' + "bye,ham\n" * rows, encoding="utf-8")
    with pytest.raises(DataError, match="^the first row opens a double quote that it never closes") as error:
        load_classification(tmp_path / "a.csv")
    assert "bye" not in str(error.value)


def test_lm_finetune_stops_at_an_unclosed_quote_before_writing(tmp_path, capsys):
    (tmp_path / "a.csv").write_text('text,label\nhi,ham\n"WIN now,spam\nbye,ham\n', encoding="utf-8")
    source, out = make_checkpoint(tmp_path / "source"), tmp_path / "run"
    with pytest.raises(SystemExit):
        main(["finetune", "classify", "--from", str(source), "--out", str(out), "--data", str(tmp_path / "a.csv")])
    assert capsys.readouterr().err.startswith(f"error: the table cannot be used: row 3: the double quote opened on "
                                              f"line 3 {NEVER_CLOSED}")
    assert not out.exists()


def test_quoted_texts_over_several_lines_still_load(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"WIN\nnow, ""free""",spam\n\nhi,ham\n', encoding="utf-8", newline="")
    assert [(e.text, e.label) for e in load_classification(tmp_path / "a.csv")] == [('WIN\nnow, "free"', "spam"),
                                                                                      ("hi", "ham")]
    (tmp_path / "mac.csv").write_text('text,label\r"WIN\rnow",spam\rhi,ham\r', encoding="utf-8", newline="")  # old Mac ends
    assert [(e.text, e.label) for e in load_classification(tmp_path / "mac.csv")] == [("WIN\nnow", "spam"), ("hi", "ham")]


def test_json_and_jsonl_uploads_with_field_errors(tmp_path):
    good = [{"instruction": "Add", "input": "1 2", "output": "3"}, {"instruction": "Say hi", "output": "hi"}]
    (tmp_path / "good.jsonl").write_text("\n".join(json.dumps(g) for g in good) + "\n\n", encoding="utf-8")
    assert load_instructions(tmp_path / "good.jsonl") == [Example("Add", "1 2", "3"), Example("Say hi", "", "hi")]
    bad = ['{"instruction": "a", "output": 3}', '{"output": "x"}', '[1]', '{"instruction": "b", "output": ""}']
    (tmp_path / "bad.jsonl").write_text("\n".join(bad), encoding="utf-8")
    with pytest.raises(DataError) as error:
        load_instructions(tmp_path / "bad.jsonl")
    assert str(error.value) == ("the examples cannot be used: line 1: 'output' must be a string; line 2: no 'instruction'; "
                                "line 3: must be an object with instruction, input, output; line 4: 'output' is empty")
    (tmp_path / "broken.json").write_text('[{"instruction": "a",', encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        load_instructions(tmp_path / "broken.json")
    (tmp_path / "broken.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": a}\n', encoding="utf-8")
    with pytest.raises(DataError, match="^line 2 is not valid JSON: Expecting value at column 17$"):
        load_instructions(tmp_path / "broken.jsonl")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(DataError, match="nests lists or objects too deeply"):
        load_instructions(tmp_path / "deep.json")
    (tmp_path / "nopref.json").write_text(json.dumps(good), encoding="utf-8")
    with pytest.raises(DataError, match="item 1: no 'chosen'; item 1: no 'rejected'"):
        load_preferences(tmp_path / "nopref.json")
    with pytest.raises(DataError, match="a .json or .jsonl file"):
        load_instructions(tmp_path / "a.csv")


def test_balanced_split_is_balanced_disjoint_and_seeded():
    examples = parse_sms((FINETUNE / "SMSSpamCollection").read_text(encoding="utf-8"))
    splits = balanced_split(examples, seed=3)
    for part in splits.values():
        counts = Counter(e.label for e in part)
        assert counts["ham"] == counts["spam"]
    assert sum(len(p) for p in splits.values()) == 2 * 747
    ids = [id(e) for part in splits.values() for e in part]
    assert len(set(ids)) == len(ids)
    assert balanced_split(examples, seed=3) == splits and balanced_split(examples, seed=4) != splits


def test_template_and_response_mask():
    example = Example("Name a colour.", "", "Red.")
    assert format_prompt(example).endswith("### Instruction:\nName a colour.\n\n### Response:\n")
    assert "### Input:\nx" in format_prompt(Example("Do", "x", "y"))
    tokenizer = shakespeare_bpe()
    ids, mask = response_mask(tokenizer, example)
    start = mask.index(1)
    assert tokenizer.decode(ids[:start]) == format_prompt(example)
    assert tokenizer.decode(ids[start:]) == "Red.<|endoftext|>" and all(mask[start:])
    cut, cut_mask = response_mask(tokenizer, example, block_size=8)
    assert cut == ids[-9:] and cut_mask == mask[-9:]


def test_padded_batches_count_only_response_tokens():
    x, y = pad_batch([([5, 6, 7, 8], [0, 0, 1, 1]), ([1, 2, 3], [0, 1, 1])], pad_id=0)
    assert x.tolist() == [[5, 6, 7], [1, 2, 0]]
    assert y.tolist() == [[-1, 7, 8], [2, 3, -1]]
    batches = length_batches([5, 1, 9, 2, 8, 3], 2, torch.Generator().manual_seed(0))
    assert sorted(i for b in batches for i in b) == list(range(6))


def test_synthetic_instructions_are_distinct_and_correct():
    examples = synthetic_examples(seed=1)
    assert len({(e.instruction, e.input) for e in examples}) == len(examples) == SIZE
    assert Counter(operation(e) for e in examples) == {name: SIZE // len(OPERATIONS) for name in OPERATIONS}
    assert {len(e.input.split("-")) for e in examples} == {LENGTH}  # held-out examples differ only in their letters
    reverse = next(e for e in examples if operation(e) == "reverse")
    assert reverse.output == "-".join(reversed(reverse.input.split("-")))
    capitals = next(e for e in examples if operation(e) == "uppercase")
    assert capitals.output == capitals.input.upper()
    tokenizer = shakespeare_bpe()  # each letter one token, the same in the input and the answer
    assert tokenizer.encode(reverse.output)[::2] == tokenizer.encode(reverse.input)[::-2]
    assert synthetic_examples(seed=1) == examples != synthetic_examples(seed=2)


def test_each_data_set_has_its_own_defaults_and_given_settings_win():
    from lm.finetune.config import FinetuneConfig

    synthetic = FinetuneConfig(method="instruct", source="m").resolved()
    assert (synthetic.data, synthetic.lr, synthetic.max_steps, synthetic.batch_size) == ("synthetic", 3e-3, 1500, 16)
    alpaca = FinetuneConfig(method="instruct", source="m", data="instructions").resolved()
    assert (alpaca.lr, alpaca.max_steps, alpaca.batch_size) == (3e-4, 300, 8)
    upload = FinetuneConfig(method="instruct", source="m", data="mine.jsonl", lr=1e-3).resolved()
    assert (upload.lr, upload.max_steps) == (1e-3, 300)
    assert FinetuneConfig(method="classify", source="m").resolved().lr == 1e-3
