"""LLM Explorer: `streamlit run app.py`."""

import streamlit as st

from explorer import classroom, lesson_steps, presenter, url_state, warm_up
from explorer.lesson_widgets import lesson_builder
from explorer.navigation import HOME, PAGES
from lm.device import use_threads_for_server

st.set_page_config(page_title="LLM Explorer", page_icon="🔬", layout="wide")
use_threads_for_server()
classroom.gate()  # classroom mode: the sign-in form until someone signs in
pages = [st.Page(HOME.path, title=HOME.title, icon=HOME.icon, default=True)]
pages += [st.Page(p.path, title=p.title, icon=p.icon) for p in PAGES]
page = st.navigation(pages)
lesson_steps.arrive()  # before the presenter switch: a presenter lesson turns it on
presenter.toggle()
classroom.badge()
presenter.apply_style()
url_state.begin_run()
lesson_steps.lesson_bar()
page.run()
warm_up.start_once()  # once the first page is drawn: the other pages' imports, in the background
# After the page (a page that stops early has nothing to share): the link then has its last changes.
with st.sidebar:
    url_state.copy_link(page.title)
    lesson_builder(page.title)
