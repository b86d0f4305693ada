"""A training run's metrics as the server read them at most LOOK_S ago, one look shared by every
session. The live parts of a page (the watched run, the runs' overlaid curves) tick once a
second; a rerun in between (a widget pressed elsewhere on the page, thirty students' ticks)
then reuses that look, so its curves are the same figures and the browser has nothing to
redraw, instead of rereading a growing file and replotting every curve each time."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from explorer.paths import FileStamp
from lm.run_folder import METRICS_FILE, read_metrics

LOOK_S = 1.0  # as often as the watched run's view ticks: the curves stay at most a second behind


def metrics_now(folder: Path) -> tuple[FileStamp | None, list[dict]]:
    """(the metrics file's version, its records); (None, []) while it has none. The version
    names what was read, for caching what is drawn from it."""
    try:
        stamp = FileStamp.of(folder / METRICS_FILE)
    except OSError:
        return None, []
    return stamp, read_metrics(folder)


@st.cache_resource(ttl=LOOK_S, max_entries=512, show_spinner=False)
def recent_metrics(folder: Path) -> tuple[FileStamp | None, list[dict]]:
    """metrics_now as read at most LOOK_S ago, for every session (shared: never modify it)."""
    return metrics_now(folder)


def run_metrics(folder: Path, active: bool) -> tuple[FileStamp | None, list[dict]]:
    """A training run's recent look; a run that has ended is read as it is now, since no tick
    comes after its last view to bring a look a second old up to date."""
    return recent_metrics(folder) if active else metrics_now(folder)


def has_metrics(folder: Path) -> bool:
    """Whether the run has logged anything yet, without reading it (a teacher's list has every student's runs)."""
    try:
        return (folder / METRICS_FILE).stat().st_size > 0
    except OSError:
        return False
