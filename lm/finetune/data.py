"""The fine-tuning data: three public sets in a registry (downloaded, verified, cached, like
lm.data's corpora), the user's own uploads, and the seeded balanced split classification uses.

    classify     text + label            the SMS Spam Collection; an upload: CSV/TSV with columns text, label
    instruct     instruction, input, output              Alpaca-style JSON or JSONL
    preference   the same + chosen, rejected             for DPO

A malformed upload is refused with the rows or fields at fault named; nothing is written."""

from __future__ import annotations

import csv
import io
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from lm.data import DataError, data_dir, decode_text, read_text_file
from lm.download import DownloadError, Progress, RemoteFile, fetch
from lm.finetune.prompts import ALPACA_TEMPLATE, Example, format_prompt, response_mask  # noqa: F401 (the spec's home)
from lm.finetune.synthetic import SYNTHETIC, synthetic_examples

KINDS = ("classify", "instruct", "preference")
MAX_ERRORS = 5  # field errors listed before "and N more"


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    description: str
    kind: str  # one of KINDS: which methods read it
    url: str
    sha256: str
    filename: str
    size: int  # bytes
    member: str = ""  # the file inside the zip at url

    @property
    def file(self) -> RemoteFile:
        return RemoteFile(self.name, self.title, self.url, self.sha256, self.size, data_dir, self.filename,
                          instead="upload your own data set instead", member=self.member)


DATASETS = {
    "sms-spam": Dataset(
        "sms-spam", "SMS Spam Collection",
        "5,574 text messages labelled ham or spam (747 spam); Almeida & Hidalgo, UCI, CC BY 4.0.",
        "classify", "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
        "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d", "SMSSpamCollection", 477_907,
        member="SMSSpamCollection",
    ),
    "instructions": Dataset(
        "instructions", "Alpaca-style instructions",
        "1,100 instruction / input / output examples (Raschka's LLMs-from-scratch, chapter 7; Apache-2.0).",
        "instruct", "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/instruction-data.json",
        "7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944", "instruction-data.json", 203_524,
    ),
    "preferences": Dataset(
        "preferences", "Instructions with preferences",
        "The same 1,100 examples with a polite (chosen) and an impolite (rejected) answer each (Apache-2.0).",
        "preference", "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/04_preference-tuning-with-dpo/instruction-data-with-preference.json",
        "305315abf14f65fa42c01a0877572f832606571c2a7d49f152ac1d758b16756e", "instruction-data-with-preference.json", 386_968,
    ),
}


@dataclass(frozen=True)
class Labelled:
    text: str
    label: str


def fetch_dataset(name: str, progress: Progress | bool = False) -> Path:
    """The registered set's file, downloaded once with its sha256 checked."""
    try:
        return fetch(DATASETS[name].file, progress)
    except DownloadError as exc:
        raise DataError(str(exc)) from exc


def _source(source: str | Path, kind: str, progress: Progress | bool) -> tuple[str, str]:
    """(text, format) of a registered name or a file path; format from the name's suffix."""
    source = str(source)
    if source in DATASETS:
        dataset = DATASETS[source]
        if dataset.kind != kind:
            raise DataError(f"{source} is a {dataset.kind} data set; this needs a {kind} one "
                            f"({', '.join(n for n, d in DATASETS.items() if d.kind == kind)})")
        text = decode_text(fetch_dataset(source, progress).read_bytes())
        return text, "sms" if source == "sms-spam" else ".json"
    suffix = Path(source).suffix.lower()
    allowed = (".csv", ".tsv") if kind == "classify" else (".json", ".jsonl")
    if suffix not in allowed:
        known = ", ".join(n for n, d in DATASETS.items() if d.kind == kind)
        raise DataError(f"{source}: expected a registered data set ({known}) or a {' or '.join(allowed)} file")
    return read_text_file(source), suffix


def _refuse(errors: list[str], what: str) -> None:
    if errors:
        more = f"; and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        raise DataError(f"{what}: " + "; ".join(errors[:MAX_ERRORS]) + more)


# --- classification ---------------------------------------------------------------


def load_classification(source: str | Path, progress: Progress | bool = False) -> list[Labelled]:
    """Labelled texts from `sms-spam` or a CSV/TSV file with a header naming `text` and `label`."""
    text, layout = _source(source, "classify", progress)
    examples = parse_sms(text) if layout == "sms" else parse_table(text, "\t" if layout == ".tsv" else ",")
    labels = {e.label for e in examples}
    if len(labels) < 2:
        raise DataError(f"{source}: classification needs at least two labels; found {sorted(labels) or 'none'}")
    return examples


def parse_sms(text: str) -> list[Labelled]:
    """The SMS Spam Collection's layout: label, a tab, the message; no header."""
    examples, errors = [], []
    for number, line in enumerate(text.splitlines(), 1):
        label, tab, message = line.partition("\t")
        if not tab or not message.strip():
            errors.append(f"line {number}: expected a label, a tab and a message")
        else:
            examples.append(Labelled(message, label))
    _refuse(errors, "the SMS Spam Collection file is damaged")
    return examples


def parse_table(text: str, delimiter: str) -> list[Labelled]:
    # newline=None reads \r\n and an old Mac's \r as line ends (csv refuses a \r it was not told of)
    rows = csv.DictReader(io.StringIO(text, newline=None), delimiter=delimiter)
    rows.fieldnames = header = _header(rows)
    examples, errors, lines = [], [], []  # lines: the file's lines as the reader counts them, once a row is faulty
    number, end = 1, rows.line_num
    try:
        for number, row in enumerate(rows, 2):
            previous, end = end, rows.line_num
            read = _read_row(row, len(header), delimiter)
            if isinstance(read, Labelled):
                examples.append(read)
            else:
                lines = lines or io.StringIO(text, newline=None).readlines()
                errors.append(f"row {number}: {_cause(read, lines, _first_line(lines, previous), end, delimiter)}")
    except csv.Error as exc:  # a field over csv's limit: an unclosed quote, when its row opens one
        lines = lines or io.StringIO(text, newline=None).readlines()
        start = _first_line(lines, end)
        errors.append(f"row {number + 1}: " + (f"the double quote opened on line {start} is not closed within "
                      f"{csv.field_size_limit():,} characters ({exc})" if '"' in lines[start - 1] else str(exc)))
    _refuse(errors, "the table cannot be used")
    if not examples:
        raise DataError("the table has a header but no rows")
    return examples


def _header(rows: csv.DictReader) -> list[str]:
    """The column names (lower case), which must include text and label. A double quote the
    first row opens and never closes makes the lines after it one name, or a field over csv's
    limit: said as such, instead of listing the file as a column name or a csv.Error."""
    try:
        header = [name.strip().lower() for name in rows.fieldnames or []]
    except csv.Error:
        header = None
    missing = [name for name in ("text", "label") if name not in (header or [])]
    if header is None or (missing and any("\n" in name for name in header)):
        raise DataError("the first row opens a double quote that it never closes, so the lines after it were read "
                        "as a column name (the first row needs only text and label, without quotes)")
    if missing:
        raise DataError(f"the first row must name the columns text and label; it has no {' and no '.join(missing)} "
                        f"(found {', '.join(header) or 'nothing'})")
    return header


def _first_line(lines: list[str], after: int) -> int:
    """The line (from 1) where the reader's next row starts: the first one after line `after`
    that is not empty (the reader skips empty lines)."""
    start = after + 1
    while start <= len(lines) and not lines[start - 1].strip("\r\n"):
        start += 1
    return start


def _read_row(row: dict, n_columns: int, delimiter: str) -> Labelled | tuple[str, str]:
    """The row's example, or what is wrong with it and the advice for it when it is on one line."""
    extra = row.get(None, ())
    if any(value.strip() for value in extra):  # on one line: a separator inside an unquoted text
        return (f"{n_columns + len(extra)} fields but the header names {n_columns}",
                f" (put a text holding {delimiter!r} in double quotes)")
    text, label = (row.get("text") or "").strip(), (row.get("label") or "").strip()
    if not text:
        return "no text", ""
    if not label:
        return "no label", ""
    return Labelled(text, label)


def _cause(problem: tuple[str, str], lines: list[str], start: int, end: int, delimiter: str) -> str:
    """A faulty row read from lines start to end, explained: a double quote that never closes (the
    reader, not strict, makes the rest of the file its text), one that closes lines later, or the
    row's own problem."""
    try:
        list(csv.reader(lines[start - 1 : end], delimiter=delimiter, strict=True))
    except csv.Error as exc:
        if "end of data" in str(exc):
            return (f"the double quote opened on line {start} is never closed, so the rest of the file became its "
                    'text (close it; a quote inside a quoted text is written "")')
    what, advice = problem
    if end == start:
        return what + advice
    return f"the double quote opened on line {start} closes only on line {end}, so those lines were read as one row ({what})"


def balanced_split(examples: list[Labelled], seed: int, fractions=(0.7, 0.1, 0.2)) -> dict[str, list[Labelled]]:
    """train / val / test, each with every label equally often: each label is cut down to the
    rarest label's count (chance is then 1/labels), shuffled with `seed`, and split by fractions."""
    by_label = defaultdict(list)
    for example in examples:
        by_label[example.label].append(example)
    per_label = min(len(group) for group in by_label.values())
    if per_label < 3:
        rare = min(by_label, key=lambda label: len(by_label[label]))
        raise DataError(f"label {rare!r} has {per_label} example(s); a train, validation and test split needs 3 or more")
    rng = random.Random(seed)
    splits = {"train": [], "val": [], "test": []}
    n_train = max(1, round(per_label * fractions[0]))
    n_val = max(1, min(per_label - n_train - 1, round(per_label * fractions[1])))
    for label in sorted(by_label):
        group = rng.sample(by_label[label], len(by_label[label]))[:per_label]
        splits["train"] += group[:n_train]
        splits["val"] += group[n_train : n_train + n_val]
        splits["test"] += group[n_train + n_val :]
    for part in splits.values():
        rng.shuffle(part)
    return splits


# --- instructions and preferences ---------------------------------------------------------


def load_instructions(source: str | Path, progress: Progress | bool = False, seed: int = 0) -> list[Example]:
    """Instruction examples from `instructions`, `synthetic` (generated) or a JSON/JSONL file."""
    if str(source) == SYNTHETIC:
        return synthetic_examples(seed)
    return parse_examples(*_source(source, "instruct", progress), preferences=False)


def load_preferences(source: str | Path, progress: Progress | bool = False) -> list[Example]:
    """Examples with a chosen and a rejected response, from `preferences` or a JSON/JSONL file."""
    return parse_examples(*_source(source, "preference", progress), preferences=True)


def parse_examples(text: str, layout: str, preferences: bool) -> list[Example]:
    if layout == ".jsonl":
        items, where = [], "line"
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                items.append((number, _json(line, f"line {number}")))
    else:
        data, where = _json(text, "the file"), "item"
        if not isinstance(data, list):
            raise DataError(f"the file must hold a JSON list of examples, not a {type(data).__name__}")
        items = list(enumerate(data, 1))
    required = ("instruction", "output", "chosen", "rejected") if preferences else ("instruction", "output")
    examples, errors = [], []
    for number, item in items:
        if not isinstance(item, dict):
            errors.append(f"{where} {number}: must be an object with instruction, input, output")
            continue
        problems = [f"{where} {number}: no {name!r}" for name in required if name not in item]
        problems += [f"{where} {number}: {name!r} must be a string" for name in (*required, "input")
                     if name in item and not isinstance(item[name], str)]
        problems += [f"{where} {number}: {name!r} is empty" for name in required
                     if isinstance(item.get(name), str) and not item[name].strip()]
        errors += problems
        if not problems:
            examples.append(Example(item["instruction"], item.get("input", ""), item["output"],
                                    item.get("chosen") if preferences else None, item.get("rejected") if preferences else None))
    _refuse(errors, "the examples cannot be used")
    if not examples:
        raise DataError("the file holds no examples")
    return examples


def _json(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno}, column {exc.colno}" if "\n" in text.strip() else f"column {exc.colno}"  # a JSONL line: its column
        raise DataError(f"{where} is not valid JSON: {exc.msg} at {at}") from None
    except RecursionError:  # json's decoder recurses once per bracket: thousands nested exhaust the stack
        raise DataError(f"{where} nests lists or objects too deeply to be examples") from None


def split_examples(examples: list, seed: int, fractions=(0.85, 0.05, 0.1)) -> dict[str, list]:
    """train / val / test of instruction examples, shuffled with `seed` (Raschka's 85/5/10)."""
    shuffled = random.Random(seed).sample(examples, len(examples))
    if len(shuffled) < 3:
        raise DataError(f"{len(shuffled)} example(s) cannot make a train, validation and test split: give 3 or more")
    n_test = max(1, round(len(shuffled) * fractions[2]))
    n_val = max(1, round(len(shuffled) * fractions[1]))
    return {"train": shuffled[: len(shuffled) - n_test - n_val], "val": shuffled[len(shuffled) - n_test - n_val : -n_test],
            "test": shuffled[-n_test:]}
