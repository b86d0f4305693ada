"""Train: start a GPT training run in the background, watch its loss fall live, compare runs."""

import streamlit as st

from explorer import presenter, runs
from explorer.run_list import import_section, runs_section
from explorer.run_start import start_section
from explorer.run_watch import live_view, watched_run
from explorer.train_form import run_form
from lm.plan import plan_run

presenter.page_title(
    "📈 Train",
    "Train a small GPT on a text and watch it learn: the loss falls as it gets better at predicting the next "
    "token. Training runs in its own process, so you can refresh, close the tab or start another run meanwhile.",
)
watched = watched_run()
if watched is not None:
    st.fragment(live_view, run_every=1.0 if watched.active else None)(watched.name, watched.active)
with st.expander("➕ Start a new run", expanded=watched is None):
    chosen = run_form()  # the inputs, then the run they plan, checked once
    if chosen is None:
        start_section(None)
    else:
        choice, name_base = chosen
        start_section(plan_run(choice), name_base)
any_active = any(info.active for info in runs.list_runs())
with st.expander("📥 Import a run"):  # before the table, so an imported run is in it at once
    import_section()
st.fragment(runs_section, run_every=3.0 if any_active else None)()
