"""LLM Explorer: `streamlit run app.py`."""

import streamlit as st

from explorer.navigation import HOME, PAGES

st.set_page_config(page_title="LLM Explorer", page_icon="🔬", layout="wide")
pages = [st.Page(HOME.path, title=HOME.title, icon=HOME.icon, default=True)]
pages += [st.Page(p.path, title=p.title, icon=p.icon) for p in PAGES]
st.navigation(pages).run()
