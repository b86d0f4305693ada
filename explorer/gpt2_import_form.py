"""The Home page's GPT-2 import: choose a size to download or a local file, start the import
(explorer.gpt2_import runs it), watch its progress, then open the model on the pages that use it.
In classroom mode only the teacher imports (into the shared models every student sees): a
download is gigabytes, and a local path reads the server's disk."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from explorer.gpt2_import import ImportJob, find_import, running_imports, start_import
from explorer.workspace import can_read_server_paths
from explorer.url_state import BIND
from lm.checkpoint import CONFIG_FILE
from lm.gpt2 import SIZES, default_folder
from lm.sizing import parameter_count

FROM_HUB, FROM_DISK = "Download from Hugging Face", "A file or folder on this machine"
MODEL_LINKS = [
    ("app_pages/attention.py", "See its attention maps", "🎯"),
    ("app_pages/generate.py", "Let it write", "✍️"),
    ("app_pages/inside.py", "Look inside it", "🔬"),
]
JOB = "gpt2_job"  # session key: the key of the import this session started


def import_form() -> None:
    """The source and size, the Import button, the progress of every running import, and links
    to each imported GPT-2 on disk (only the links for a student)."""
    import_section(import_controls, {default_folder(name) for name in SIZES},
                   "Your teacher imports GPT-2 for the class; it then opens here and in the Attention and Generate pages.")


def import_section(controls: Callable[[], ImportJob | None], known: set[Path], for_students: str) -> None:
    """An import form: its controls for those who may import (`for_students` said to the others),
    then links to each model on disk among the `known` folders and the one this session imported."""
    if can_read_server_paths():
        mine = controls()
    else:
        st.info(for_students)
        mine = None
    imported = known | ({mine.folder} if mine is not None and mine.folder else set())
    for folder in sorted(f for f in imported if (f / CONFIG_FILE).is_file()):
        show_links(folder)


def import_controls() -> ImportJob | None:
    """The widgets and the imports' progress; the import this session started, if any."""
    source_kind = st.radio("Weights", [FROM_HUB, FROM_DISK], key="gpt2_source", horizontal=True, bind=BIND)
    if source_kind == FROM_HUB:
        st.selectbox("Size", list(SIZES), key="gpt2_size", format_func=download_label, bind=BIND)
    else:
        st.text_input("Path to model.safetensors, or to a folder holding it and its config.json", key="gpt2_path",
                      placeholder="/home/me/Downloads/gpt2")
    st.button("Import GPT-2", key="gpt2_import", type="primary", on_click=start,
              disabled=source_kind == FROM_DISK and chosen_import()[1] is None)
    return watch_imports("gpt2", JOB)


def watch_imports(kind: str, session_key: str) -> ImportJob | None:
    """Every running import of this kind, watched to its end; then the import this session
    started (its key kept under `session_key`), its error said."""
    if running_imports(kind):
        for job in running_imports(kind):
            watch(job)
        st.rerun()  # the list of models has changed
    mine = find_import(st.session_state[session_key]) if session_key in st.session_state else None
    if mine is not None and mine.error:
        st.error(mine.error)
    return mine


def chosen_import() -> tuple[str, str | None]:
    """(size, local path or None) as the widgets stand; a local file says its own size."""
    if st.session_state.get("gpt2_source") == FROM_DISK:
        return "small", st.session_state.get("gpt2_path", "").strip() or None
    return st.session_state.get("gpt2_size", "small"), None


def download_label(size: str) -> str:
    spec = SIZES[size]
    return f"{spec.label}, a {4 * parameter_count(spec.config()) / 1e9:.1f} GB download"


def start() -> None:
    """The button's callback: it runs before the page does, with the widgets' latest values."""
    if not can_read_server_paths():
        return
    st.session_state[JOB] = start_import(*chosen_import()).key


def watch(job: ImportJob) -> None:
    """Redraw the import's progress until it ends; the import itself runs on without this page."""
    bar = st.progress(0.0)
    while job.running:
        bar.progress(*job.progress())
        time.sleep(0.25)
    bar.empty()


def show_links(folder: Path) -> None:
    """Open an imported model on the pages that use it (?model= preselects it)."""
    st.markdown(f"**{folder.name}** is on disk:")
    for column, (path, label, icon) in zip(st.columns(len(MODEL_LINKS)), MODEL_LINKS):
        column.page_link(path, label=label, icon=icon, query_params={"model": folder.name})
