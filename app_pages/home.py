"""Home: what the app is, where to go, what this machine has, and OpenAI's GPT-2 and small open-weight models to import."""

import streamlit as st

from explorer import presenter
from explorer.gpt2_import_form import import_form
from explorer.hf_import_form import open_models_form
from explorer.home_picture import home_picture
from explorer.home_sections import page_cards, section, this_machine
from explorer.lesson_widgets import lessons_section
from explorer.navigation import PAGES
from explorer.prepare import prepare_section

presenter.page_title(
    "🔬 LLM Explorer",
    "Build a small GPT from scratch and look inside it: turn text into tokens, train a model "
    "while its loss is plotted live, read its attention maps and watch it write, token by token.  \n"
    "Everything you see is computed by this project's own `lm` package, which you can also use "
    "from Python and the command line.",
)
home_picture()
page_cards(PAGES)

section(
    "🎓 Lessons",
    "Ready-made walks through the pages for a class: each step opens a page already set up. Every page keeps its "
    "settings in its address, so **🔗 Copy link** in the sidebar shares exactly what you see, and **🎓 Save as a "
    "lesson** collects pages into a lesson file of your own. **Presenter view** makes everything readable on a projector."
)
lessons_section()

st.subheader("This machine")
this_machine()
prepare_section()

section(
    "OpenAI's GPT-2",
    "Open the real GPT-2 on the Attention and Generate pages, like your own models: OpenAI's weights are "
    "copied into this project's GPT, name by name. They are downloaded once from Hugging Face, or read from "
    "a `model.safetensors` you already have."
)
import_form()

section(
    "Small open-weight models",
    "Today's small open models (SmolLM2, Qwen3, Pythia, Gemma 3) open here like your own: their weights are "
    "copied name by name into this project's GPT, with its architecture switches set to match (RoPE, RMSNorm, "
    "SwiGLU, grouped key/value heads, Gemma's sandwich norms). Download one from Hugging Face, or import a model "
    "folder you already have."
)
open_models_form()
