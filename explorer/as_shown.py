"""What a live view showed at its last refresh, shown again by a rerun that comes before the next
one: a rerun of the whole page (a click elsewhere on it) then sends its charts and tables
unchanged, and the browser has nothing to redraw. Streamlit 1.67 runs every fragment on a full
rerun, so a fragment's own timer alone cannot spare that redraw."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import streamlit as st

T = TypeVar("T")


def as_last_shown(key: str, kinds: tuple, fresh_s: float, read: Callable[[], T]) -> T:
    """`read()`, or what it returned when last called under the session key `key`, while `kinds`
    (what must show at once when it changes: which runs, their states) is the same and less than
    `fresh_s` has passed. `fresh_s` stays under the view's refresh interval, so every refresh reads."""
    last = st.session_state.get(key)
    now = time.monotonic()
    if last is None or last[0] != kinds or now - last[1] >= fresh_s:
        last = st.session_state[key] = (kinds, now, read())
    return last[2]
