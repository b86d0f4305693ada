"""The Train page's runs: the table of every run, their loss curves overlaid, and for one
run watch, export (a zip) or delete (after asking); and importing a run exported elsewhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from explorer import runs
from explorer.as_shown import as_last_shown
from explorer.live_files import has_metrics, run_metrics
from explorer.plain_text import plain
from explorer.run_differences import differences_sentence
from explorer.workspace import can_manage, runs_place
from explorer.run_archive import export_run, import_run
from explorer.training_view import LOSS_FORMAT, overlay_figure, runs_table
from explorer.widgets import chart


REFRESH_S = 3.0  # how often the table rereads the runs while one trains
FRESH_S = REFRESH_S - 0.5  # under it, so that every refresh reads


class Listing:
    """Every run as the page listed them for this rerun, handed to the runs section once. The
    section is a fragment: its own timer calls it again with the same arguments, and then it
    lists the runs afresh."""

    def __init__(self, infos: list[runs.RunInfo] | None):
        self._infos = infos

    def take(self) -> list[runs.RunInfo]:
        infos, self._infos = self._infos, None
        return runs.list_runs() if infos is None else infos


@dataclass
class Shown:
    infos: list[runs.RunInfo]
    curves: dict = field(default_factory=dict)  # run name: (FileStamp, metrics), read when first compared


def shown_runs(infos: list[runs.RunInfo]) -> Shown:
    """The runs as the table shows them: while only their progress (steps, losses, curves) has
    changed, as the table's last refresh read them (explorer.as_shown). A run started, ended,
    stopped, imported or deleted shows at once."""
    kinds = tuple((info.name, info.state, info.stop_requested) for info in infos)
    return as_last_shown("train_runs_shown", kinds, FRESH_S, lambda: Shown(infos))


def runs_section(listing: Listing) -> None:
    st.header("All runs")
    shown = shown_runs(listing.take())
    infos = shown.infos
    if not infos:
        st.caption(f"No training runs yet in {runs_place()}.")
        return
    loss = st.column_config.NumberColumn(format=LOSS_FORMAT)  # the grid's own rounding showed a tiny loss as 0
    st.dataframe(runs_table(infos), hide_index=True, width="stretch", column_config={"best val loss": loss})
    compare_curves(shown)
    pick_column, watch_column, export_column, delete_column = st.columns([3, 1, 1, 1.2], vertical_alignment="bottom")  # "🗑 Delete…" was cut at 1280 px
    pick = pick_column.selectbox("Run", [info.name for info in infos], key="train_pick")
    picked = next(info for info in infos if info.name == pick)
    export_column.download_button(
        "⬇ Export", data=lambda: export_run(picked.folder), file_name=f"{pick.replace('/', '-')}.zip", mime="application/zip",
        key="train_export", width="stretch", disabled=picked.active, on_click="ignore",
        help="The run's folder as a zip (model, metrics, samples), to import on another machine and compare curves.",
    )
    if watch_column.button("📈 Watch", key="train_watch", width="stretch"):
        st.query_params["run"] = pick
        st.rerun()
    if delete_column.button("🗑 Delete…", key="train_delete", width="stretch", disabled=not can_manage(picked)):
        st.session_state["train_confirm_delete"] = pick
    if st.session_state.get("train_confirm_delete") == pick:
        confirm_delete(picked)


def compare_curves(shown: Shown) -> None:
    """The chosen runs' losses on one chart: the three newest until someone chooses."""
    infos = shown.infos
    with_metrics = [info.name for info in infos if has_metrics(info.folder)]
    chosen = st.session_state.get("train_compare_chosen")  # else a lesson's link may name the runs
    previous = st.session_state.get("train_compare") if chosen else st.query_params.get_all("train_compare")
    st.session_state["train_compare"] = [n for n in previous if n in with_metrics] if previous else with_metrics[:3]
    compare = st.multiselect(
        "Compare the loss curves of", with_metrics, key="train_compare",
        on_change=lambda: st.session_state.update(train_compare_chosen=True),
    )
    if compare:
        by_name = {info.name: info for info in infos}
        for n in compare:
            if n not in shown.curves:
                shown.curves[n] = run_metrics(by_name[n].folder, by_name[n].active)
        looks = {n: shown.curves[n] for n in compare}
        versions = tuple((n, stamp) for n, (stamp, _) in looks.items())
        chart(overlay_of(versions, {n: metrics for n, (_, metrics) in looks.items()}), "train_overlay", "loss-curves")
        st.markdown(differences_sentence({name: by_name[name].options for name in compare}))  # a CLI run's: its checkpoint's


@st.cache_resource(max_entries=32, show_spinner=False)
def overlay_of(versions: tuple, _curves: dict[str, list[dict]]) -> go.Figure:
    """The runs' overlaid losses, built once per version of their metrics files (`versions`: each
    run's name and FileStamp) for every session. Never modified afterwards: chart() restyles a copy."""
    return overlay_figure(_curves)


def import_section() -> bool:
    """Bring in a run exported elsewhere (a classmate's), to watch it and overlay its curve. True
    when a run was imported in this rerun."""
    upload = st.file_uploader("A run exported from the Train page (.zip)", type="zip", key="train_import_file")
    if upload is None:
        return False
    name = st.text_input("Name it", value=runs.free_name(Path(upload.name).stem[:50] or "imported"), key="train_import_name")
    if not st.button("Import", key="train_import", type="primary"):
        return False
    try:
        folder = import_run(upload.getvalue(), name.strip())
    except runs.RunError as exc:
        st.error(plain(exc))
        return False
    st.success(f"Imported as **{folder.name}**: it is in the table below, and its curve can be compared.")
    return True


def confirm_delete(info: runs.RunInfo) -> None:
    still = " It is still training: it will be stopped." if info.active else ""
    st.warning(
        f"Delete the run **{info.name}** and everything in it (model, metrics, samples)?{still} This cannot be undone."
    )
    yes, no, _ = st.columns([1, 1, 3])
    if yes.button("Yes, delete it", type="primary", key="train_delete_yes"):
        try:
            runs.delete_run(info.name)
        except runs.RunError as exc:
            st.error(plain(exc))
            return
        st.session_state.pop("train_confirm_delete", None)
        if st.query_params.get("run") == info.name:
            del st.query_params["run"]
        st.rerun()
    if no.button("Cancel", key="train_delete_no"):
        st.session_state.pop("train_confirm_delete", None)
        st.rerun()
