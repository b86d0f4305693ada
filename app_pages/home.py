"""Home: what the app is, where to go, what this machine has, and OpenAI's GPT-2 to import."""

import time

import streamlit as st

from explorer.gpt2_import import ImportJob, find_import, running_imports, start_import
from explorer.lessons import MAX_LESSON_BYTES, LessonError, lesson_card, parse_lesson, shipped_lessons
from explorer.models import find_models
from explorer.navigation import PAGES
from explorer.paths import runs_root
from explorer.url_state import BIND
from lm.device import default_device, describe_device
from lm.gpt2 import SIZES, default_folder
from lm.sizing import parameter_count

FROM_HUB, FROM_DISK = "Download from Hugging Face", "A file or folder on this machine"
MODEL_LINKS = [
    ("app_pages/attention.py", "See its attention maps", "🎯"),
    ("app_pages/generate.py", "Let it write", "✍️"),
]

st.title("🔬 LLM Explorer")
st.markdown(
    "Build a small GPT from scratch and look inside it: turn text into tokens, train a model "
    "while its loss is plotted live, read its attention maps and watch it write, token by token.  \n"
    "Everything you see is computed by this project's own `lm` package, which you can also use "
    "from Python and the command line."
)

for row_start in range(0, len(PAGES), 2):
    for column, page in zip(st.columns(2), PAGES[row_start : row_start + 2]):
        with column.container(border=True):
            st.subheader(f"{page.icon} {page.title}")
            st.write(page.teaches)
            st.page_link(page.path, label=f"Open {page.title}", icon="➡️")

st.subheader("🎓 Lessons")
st.write(
    "Ready-made walks through the pages for a class: each step opens a page already set up. Every page keeps its "
    "settings in its address, so **🔗 Copy link** in the sidebar shares exactly what you see, and **🎓 Save as a "
    "lesson** collects pages into a lesson file of your own. **Presenter view** makes everything readable on a projector."
)
try:
    lessons = list(shipped_lessons().values())
except LessonError as exc:
    st.error(f"A lesson shipped with the app cannot be read: {exc}")
    lessons = []
for row_start in range(0, len(lessons), 2):
    for column, lesson in zip(st.columns(2), lessons[row_start : row_start + 2]):
        with column:
            lesson_card(lesson)
upload = st.file_uploader("Open a lesson file (.toml or .json)", type=["toml", "json"], key="lesson_upload")
if upload is not None:
    try:
        if upload.size > MAX_LESSON_BYTES:  # the browser's limit is not enforced by the server
            raise LessonError(f"the file is {upload.size:,} bytes; a lesson is at most {MAX_LESSON_BYTES:,}")
        lesson_card(parse_lesson(upload.getvalue(), upload.name))
    except LessonError as exc:
        st.error(f"{upload.name} cannot be opened as a lesson: {exc}")

st.subheader("This machine")
left, right = st.columns(2)
with left:
    st.metric("Training would run on", default_device().upper())
    st.caption(describe_device(default_device()))
with right:
    models = find_models()
    st.metric("Models on disk", len(models))
    if models:
        st.dataframe(
            [{"model": m.name, "size (MB)": round(m.size_bytes / 1e6, 1)} for m in models],
            hide_index=True,
        )
    else:
        st.caption(f"No trained models yet in `{runs_root()}/`.")

st.subheader("OpenAI's GPT-2")
st.write(
    "Open the real GPT-2 on the Attention and Generate pages, like your own models: OpenAI's weights are "
    "copied into this project's GPT, name by name. They are downloaded once from Hugging Face, or read from "
    "a `model.safetensors` you already have."
)


def show_links(folder) -> None:
    """Open an imported model on the pages that use it (?model= preselects it)."""
    st.markdown(f"**{folder.name}** is on disk:")
    for column, (path, label, icon) in zip(st.columns(2), MODEL_LINKS):
        column.page_link(path, label=label, icon=icon, query_params={"model": folder.name})


def watch(job: ImportJob) -> None:
    """Redraw the import's progress until it ends; the import itself runs on without this page."""
    bar = st.progress(0.0)
    while job.running:
        bar.progress(*job.progress())
        time.sleep(0.25)
    bar.empty()


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
    st.session_state["gpt2_job"] = chosen_import()
    start_import(*st.session_state["gpt2_job"])


source_kind = st.radio("Weights", [FROM_HUB, FROM_DISK], key="gpt2_source", horizontal=True, bind=BIND)
if source_kind == FROM_HUB:
    st.selectbox("Size", list(SIZES), key="gpt2_size", format_func=download_label, bind=BIND)
else:
    st.text_input("Path to model.safetensors, or to a folder holding it and its config.json", key="gpt2_path",
                  placeholder="/home/me/Downloads/gpt2")
st.button("Import GPT-2", key="gpt2_import", type="primary", on_click=start,
          disabled=source_kind == FROM_DISK and chosen_import()[1] is None)
if running_imports():
    for job in running_imports():
        watch(job)
    st.rerun()  # the list of models above has changed

mine = find_import(*st.session_state["gpt2_job"]) if "gpt2_job" in st.session_state else None
if mine is not None and mine.error:
    st.error(mine.error)
imported = {default_folder(name) for name in SIZES} | ({mine.folder} if mine is not None and mine.folder else set())
for folder in sorted(f for f in imported if (f / "config.json").is_file()):
    show_links(folder)
