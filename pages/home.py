"""Home: what the app is, where to go, and what this machine has."""

import streamlit as st

from explorer.models import find_models
from explorer.navigation import PAGES, run_through_app
from explorer.paths import runs_root
from lm.device import default_device, describe_device

run_through_app()
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
