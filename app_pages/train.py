"""Train: start a GPT training run in the background, watch its loss fall live, compare runs."""

import streamlit as st

from explorer import presenter, run_list, run_watch, runs
from explorer.run_list import Listing, import_section, runs_section
from explorer.run_start import new_run_section
from explorer.run_watch import live_view, watched_run

presenter.page_title(
    "📈 Train",
    "Train a small GPT on a text and watch it learn: the loss falls as it gets better at predicting the next "
    "token. Training runs in its own process, so you can refresh, close the tab or start another run meanwhile.",
)
watched = watched_run()
if watched is not None:
    st.fragment(live_view, run_every=run_watch.REFRESH_S if watched.active else None)(watched.name, watched.active)
listed = runs.list_runs()  # once per rerun: the form's limits and the table below share it
new_run_section(watched is not None, listed)
with st.expander("📥 Import a run"):  # before the table, so an imported run is in it at once
    imported = import_section()
st.fragment(runs_section, run_every=run_list.REFRESH_S if any(info.active for info in listed) else None)(
    Listing(None if imported else listed)
)
