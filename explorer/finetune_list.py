"""The Fine-tune page's list of fine-tune runs, with one to watch."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from explorer.finetune_runs import METHODS, finetune_record, finetune_runs
from explorer.run_list import Listing
from explorer.training_view import state_label
from explorer.workspace import runs_place


def list_rows(infos: list) -> list[dict]:
    """One row per fine-tune run (explorer.runs.RunInfo), newest first."""
    rows = []
    for info in infos:
        record = finetune_record(info.folder) or {}
        rows.append({
            "run": info.name,
            "method": METHODS.get(record.get("method"), (record.get("method"), ""))[0],
            "from": Path(str(record.get("source") or record.get("from") or "")).name,
            "data": Path(str(record.get("data") or "")).name,
            "status": state_label(info.state),
            "step": f"{info.step:,} / {info.max_steps:,}" if info.max_steps else f"{info.step:,}",
        })
    return rows


def runs_section(listing: Listing) -> None:
    """A fragment: `listing` holds the runs the page listed for this rerun (run_list.Listing)."""
    st.header("Fine-tune runs")
    infos = finetune_runs(listing.take())
    if not infos:
        st.caption(f"No fine-tune runs yet in {runs_place()}.")
        return
    st.dataframe(list_rows(infos), hide_index=True, width="stretch")
    pick_column, watch_column = st.columns([4, 1], vertical_alignment="bottom")
    pick = pick_column.selectbox("Run", [info.name for info in infos], key="ft_pick")
    if watch_column.button("📈 Watch", key="ft_watch", width="stretch"):
        st.query_params["run"] = pick
        st.rerun()
    st.caption("Export, compare or delete runs on the Train page: fine-tune runs are runs like any other.")
