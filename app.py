"""LLM Explorer: `streamlit run app.py`."""

import os

import streamlit as st
import torch

from explorer import presenter, url_state
from explorer.lessons import lesson_builder
from explorer.navigation import HOME, PAGES

st.set_page_config(page_title="LLM Explorer", page_icon="🔬", layout="wide")
# Leave a core for the server itself and for runs training in the background: on a
# 2-core machine two PyTorch threads made the pages several times slower, not faster.
torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
pages = [st.Page(HOME.path, title=HOME.title, icon=HOME.icon, default=True)]
pages += [st.Page(p.path, title=p.title, icon=p.icon) for p in PAGES]
page = st.navigation(pages)
presenter.toggle()
presenter.apply_style()
url_state.begin_run()
page.run()
# After the page (a page that stops early has nothing to share): the link then has its last changes.
with st.sidebar:
    url_state.copy_link()
    lesson_builder(page.title)
