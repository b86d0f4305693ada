"""Fine-tune: start from a pretrained model, teach it one new thing (classify, follow instructions,
prefer answers, or a new text), watch it learn, and compare it before and after."""

import streamlit as st

from explorer import presenter, run_list, run_watch, runs
from explorer.finetune_list import runs_section
from explorer.finetune_start import new_finetune_section
from explorer.finetune_watch import live_view
from explorer.run_list import Listing
from explorer.run_watch import watched_run

presenter.page_title(
    "🎛️ Fine-tune",
    "A pretrained model has learned to predict text. Fine-tuning teaches it one new thing with little data and few "
    "steps: sort messages into classes, answer instructions, prefer one answer to another. Then compare it before and after.",
)
watched = watched_run()
if watched is not None:
    st.fragment(live_view, run_every=run_watch.REFRESH_S if watched.active else None)(watched.name, watched.active)
new_finetune_section(watching=watched is not None)
listed = runs.list_runs()  # once per rerun, shared with the table
st.fragment(runs_section, run_every=run_list.REFRESH_S if any(info.active for info in listed) else None)(
    Listing(listed)
)
