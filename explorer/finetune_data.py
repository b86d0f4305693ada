"""The Fine-tune page's data: for each method the built-in sets it reads (lm.finetune.data's
registry, a download button while one is missing) or the user's own file, checked by lm's
loaders before anything starts, so a malformed upload gets their row- and field-level errors
and nothing is written. Continue pretraining reads a text, as the Train page does."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from explorer.plain_text import plain
from explorer.prepare import download_button
from explorer.url_state import BIND
from explorer.widgets import corpus_input, within_limit
from lm.data import CORPORA, DataError, NotUTF8Error, human_size
from lm.finetune.data import DATASETS, load_classification, load_instructions, load_preferences
from lm.finetune.synthetic import SYNTHETIC

UPLOAD = "Upload a file"
SYNTHETIC_TITLE = "Synthetic puzzles"
SYNTHETIC_ABOUT = ("Made up by the project, with answers that can be checked exactly: reverse q-h-z → z-h-q, "
                   "capitals, copy, first and last letter. A model that knows only Shakespeare can learn these.")
KINDS = {"classify": "classify", "instruct": "instruct", "dpo": "preference"}
UPLOAD_TYPES = {"classify": ["csv", "tsv"], "instruct": ["json", "jsonl"], "dpo": ["json", "jsonl"]}
UPLOAD_LAYOUT = {
    "classify": "a CSV or TSV file whose first row names the columns text and label",
    "instruct": "a JSON list or JSON Lines of objects with instruction, input (may be empty) and output",
    "dpo": "a JSON list or JSON Lines of objects with instruction, input, output, chosen and rejected",
}
MAX_UPLOAD_BYTES = 20 * 2**20


@dataclass(frozen=True)
class DataChoice:
    data: str  # what --data names: a set or corpus name ("" for an upload, which the run keeps as a file)
    description: str
    examples: tuple = ()  # the parsed examples (lm.finetune.data.Labelled or Example), none for a text
    upload: tuple[str, bytes] | None = None  # (file name, bytes) to keep in the run folder and train on


def load_examples(method: str, source: str, seed: int = 0) -> list:
    """The examples `source` (a registered name, "synthetic" or a file) holds for `method`; DataError if malformed."""
    if method == "classify":
        return load_classification(source)
    if method == "instruct":
        return load_instructions(source, seed=seed)
    return load_preferences(source)


@st.cache_data(show_spinner="Reading the data set…", max_entries=8)
def _registered_examples(method: str, name: str, stamp: tuple) -> list:
    """Read once per file version (stamp: its mtime and size), not on every rerun."""
    return load_examples(method, name)


def data_sets(method: str) -> dict[str, str]:
    """The built-in data the method can read, title: name (the synthetic puzzles first for instructions)."""
    sets = {d.title: name for name, d in DATASETS.items() if d.kind == KINDS[method]}
    return {SYNTHETIC_TITLE: SYNTHETIC, **sets} if method == "instruct" else sets


def chosen_data(method: str) -> str | None:
    """The data name the form's data choice shows for `method` (its first set when the choice is
    another method's), "" for an upload, None for continue's text."""
    if method == "continue":
        return None
    sets = data_sets(method)
    title = st.session_state.get("ft_data")
    return "" if title == UPLOAD else sets.get(title, next(iter(sets.values()), ""))


def data_input(method: str, on_change=None) -> DataChoice | None:
    """The data the method trains on; None (having said why) while there is none usable yet.
    `on_change` runs when another data set is chosen (its own settings)."""
    if method == "continue":
        corpus = corpus_input("ft", "Text to continue on")
        if corpus is None:
            return None
        text, description = corpus
        registered = next((c for c in CORPORA.values() if c.title == description), None)
        if registered is not None:
            return DataChoice(registered.name, description)
        return DataChoice("", description, upload=("data.txt", text.encode("utf-8")))
    sets = data_sets(method)
    source = st.radio("Data", [*sets, UPLOAD], horizontal=True, key="ft_data", bind=BIND, on_change=on_change)
    if source == UPLOAD:
        return _uploaded(method)
    return _registered(method, sets[source])


def _registered(method: str, name: str) -> DataChoice | None:
    if name == SYNTHETIC:
        st.caption(SYNTHETIC_ABOUT)
        return DataChoice(name, SYNTHETIC_TITLE, tuple(load_instructions(SYNTHETIC)))
    dataset = DATASETS[name]
    st.caption(dataset.description)
    if not dataset.file.is_present():
        st.info(f"{dataset.title} is not on this machine yet: download it once, or upload a file of your own.", icon="📥")
        download_button([dataset.file], key=f"ft_download_{name}")
        return None
    path = dataset.file.path
    try:
        examples = _registered_examples(method, name, (path.stat().st_mtime_ns, path.stat().st_size))
    except DataError as exc:
        st.error(plain(exc))
        return None
    return DataChoice(name, dataset.title, tuple(examples))


def _uploaded(method: str) -> DataChoice | None:
    upload = st.file_uploader(f"Your data: {UPLOAD_LAYOUT[method]} (UTF-8, up to {human_size(MAX_UPLOAD_BYTES)})",
                              type=UPLOAD_TYPES[method], key=f"ft_upload_{method}")
    if upload is None or not within_limit(upload, MAX_UPLOAD_BYTES):
        return None
    data = upload.getvalue()
    try:
        examples = _upload_examples(method, upload.name, data)
    except NotUTF8Error:  # its message offers an encoding choice, which text uploads have and this one has not
        st.error(plain(f"{upload.name} is not UTF-8: save it as UTF-8 (a spreadsheet's \"CSV UTF-8\") and upload it again."))
        return None
    except DataError as exc:
        st.error(plain(f"{upload.name}: {exc}"))
        return None
    return DataChoice("", upload.name, examples, upload=(upload.name, data))


@st.cache_resource(show_spinner="Reading your file…", max_entries=4)
def _upload_examples(method: str, name: str, data: bytes) -> tuple:
    """Parsed once per file, not on every rerun (a 20 MB table takes about a second); a resource, not
    data, since unpickling a copy costs as much as parsing, and the examples are frozen: sharing is safe."""
    return tuple(parse_upload(method, name, data))


def parse_upload(method: str, name: str, data: bytes) -> list:
    """An upload's examples, read by lm's loader from a private copy (its extension says the format)."""
    suffix = Path(name).suffix.lower()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        return load_examples(method, str(path))


def describe(choice: DataChoice, method: str) -> str:
    """'5,574 messages, 2 labels: ham 4,827 · spam 747' or '1,100 examples'."""
    if not choice.examples:
        return ""
    if method != "classify":
        return f"{len(choice.examples):,} examples"
    counts: dict[str, int] = {}
    for example in choice.examples:
        counts[example.label] = counts.get(example.label, 0) + 1
    shown = " · ".join(f"{label} {n:,}" for label, n in sorted(counts.items()))
    return f"{len(choice.examples):,} messages, {len(counts)} labels: {shown}"
