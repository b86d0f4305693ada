"""Getting this machine ready for class: the Home page's "Prepare this machine for class" (what
the lessons and pages download, what is here, a button that fetches the rest), the note on a
lesson's card when it needs something missing, and the same download button wherever a page
lacks a file. Downloads happen only when a button is pressed, never while a page is drawn."""

from __future__ import annotations

import re

import streamlit as st

from explorer.lessons import Lesson
from lm.data import CORPORA, human_size
from lm.download import RemoteFile, cache_root
from lm.prepare import Outcome, class_files, missing_files, prepare

ANCHOR = "prepare-this-machine"
ENCODING_IN_LABEL = re.compile(r"\((\w+)\)")  # "GPT-2 (r50k_base)", "GPT-2's (r50k_base)"


def files_named(values: list[str]) -> list[RemoteFile]:
    """The class files some setting values name: a corpus by its title, an OpenAI tokenizer by
    "(encoding)" in its label."""
    files = class_files()
    by_title = {file.title: file for file in files.values()}
    named = {}
    for value in values:
        match = ENCODING_IN_LABEL.search(value)
        file = by_title.get(value) or (files.get(match.group(1)) if match else None)
        if file is not None:
            named[file.name] = file
    return list(named.values())


def missing_for_lesson(lesson: Lesson) -> list[RemoteFile]:
    """What a lesson's steps choose (a corpus, OpenAI's tokenizers) that is not on this machine."""
    values = [v for step in lesson.steps for value in step.params.values()
              for v in (value if isinstance(value, list) else [value])]
    return missing_files(files_named(values))


def lesson_readiness(lesson: Lesson) -> None:
    """On a lesson's card, before its steps: what it needs that is missing, and where to get it."""
    missing = missing_for_lesson(lesson)
    if missing:
        st.warning(
            f"This lesson needs {_names(missing)}, not on this machine yet: download "
            f"{'it' if len(missing) == 1 else 'them'} in [Prepare this machine for class](#{ANCHOR}) below"
            + (", or upload a text of your own on its step." if any(f.name in CORPORA for f in missing) else "."),
            icon="📥",
        )


def prepare_section() -> None:
    """Home: every file the lessons and pages download, whether it is here, and one button for the rest."""
    st.subheader("📥 Prepare this machine for class", anchor=ANCHOR)
    files = list(class_files().values())
    st.write("The lessons train on Tiny Shakespeare and compare OpenAI's tokenizers. Download them once, on a "
             "connected machine, before class: every page then works without a network.")
    st.dataframe([{"file": f.title, "size": human_size(f.size), "on this machine": "✓" if f.is_present() else "✗ missing"}
                  for f in files], hide_index=True)
    st.caption(f"Kept in `{cache_root()}` (set LM_DATA_DIR to move it); the same as `python -m lm download --all`.")
    download_button(files, key="prepare_all")


def download_button(files: list[RemoteFile], key: str) -> None:
    """A button that downloads those of `files` that are missing, with one progress bar; what happened
    shows after the page is drawn again (with the files now present)."""
    outcomes = st.session_state.pop(f"{key}_outcomes", None)
    if outcomes:
        _show(outcomes)
    missing = missing_files(files)
    if not missing:
        if outcomes is None:
            st.success("Everything is on this machine.", icon="✅")
        return
    if st.button(f"⬇ Download {_names(missing)} ({human_size(sum(f.size for f in missing))})", key=key):
        bar = st.progress(0.0, text=f"Downloading {missing[0].title}…")
        total = sum(f.size for f in missing)

        def progress(file: RemoteFile, done: int, size: int) -> None:
            before = sum(f.size for f in missing[: missing.index(file)])
            bar.progress(min(1.0, (before + done) / total), text=f"Downloading {file.title}…")

        st.session_state[f"{key}_outcomes"] = prepare(missing, progress)
        st.rerun()


def _show(outcomes: list[Outcome]) -> None:
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        st.success(f"Downloaded {_names([o.file for o in outcomes])}. This machine is ready.", icon="✅")
        return
    lines = "\n".join(f"- **{o.file.title}**: {o.state}: {o.message}" for o in failed)
    st.error(f"Could not download everything:\n{lines}\n\nOn a connected machine run `python -m lm download --all` "
             f"and copy the files to the same folders here: "
             + ", ".join(f"`{o.file.path}`" for o in failed), icon="📡")


def _names(files: list[RemoteFile]) -> str:
    titles = [f.title for f in files]
    return titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]
