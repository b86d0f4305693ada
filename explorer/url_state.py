"""A page's settings live in its URL, so a link reopens the page as it was.

Streamlit 1.67 does the work: a widget drawn with a `key` and `bind="query-params"`
(`BIND` here) takes its value from the URL parameter named after its key when the page
opens, and writes its value back whenever it changes. A value equal to the widget's
default is left out, so links stay short; a malformed or unknown value is ignored and the
default used. Switching pages drops the other page's parameters and restores this page's
when you come back, while parameters bound by app.py (the presenter view) follow every page.
Read a page's own keys at its `bind=` arguments.

Streamlit also drops the parameter of a widget the page does not draw in a run (a folded form,
a tab not open, a control shown only for some choices), though the session keeps its value and
the widget shows it again when drawn. This module adds what Streamlit lacks: a page's link and
lesson steps that keep those settings (page_params), keeping long texts out of links, and a link
to copy.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import streamlit as st
from streamlit.errors import StreamlitAPIException

from explorer.identity import IDENTITY_PARAM

BIND = "query-params"
# A text longer than this once URL-encoded stays out of the link: chats and mail mangle long
# links, and a URL over 64 KB is refused by the server outright when the page is reloaded.
MAX_TEXT_IN_LINK = 2_000
LEFT_OUT = "url_left_out"  # session key: labels of the texts left out of this run's link
KEPT = "url_kept"  # session key: {page: {parameter: (its text in the link, the value the session held)}}


def begin_run() -> None:
    """Call before the page runs: forget the texts the previous run left out of its link, and
    drop infinite numbers from the URL. Streamlit 1.67 crashes (OverflowError) when it seeds an
    integer widget from one (?gen_seed=1e999); no setting is infinite, so nothing is lost. The
    widgets are seeded from the URL the run started with, hence the rerun."""
    st.session_state[LEFT_OUT] = []
    dropped = False
    for key in list(st.query_params):
        if any(_infinite(value) for value in st.query_params.get_all(key)):
            try:
                del st.query_params[key]
                dropped = True
            except StreamlitAPIException:  # bound already: the widget has its value, the URL is not read again
                pass
    if dropped:
        st.rerun()


def _infinite(text: str) -> bool:
    try:
        return math.isinf(float(text))
    except ValueError:
        return False


def bind_text(key: str, label: str):
    """`bind=` for a text widget: bound while its text is short enough for a link."""
    value = st.session_state.get(key)
    if isinstance(value, str) and len(quote(value)) > MAX_TEXT_IN_LINK:
        st.session_state.setdefault(LEFT_OUT, []).append(label)
        return None
    return BIND


def current_params() -> dict[str, str | list[str]]:
    """This page's URL parameters as they stand (a multiselect's several values kept as a list),
    less a student's sign-in (explorer.identity): a shared link or lesson must not sign others in."""
    params = {}
    for key in st.query_params:
        if key == IDENTITY_PARAM:
            continue
        values = st.query_params.get_all(key)
        params[key] = values[0] if len(values) == 1 else values
    return params


def page_params(page: str) -> dict[str, str | list[str]]:
    """The page's settings for its link and its lesson steps: its URL parameters (current_params)
    and those Streamlit dropped from the URL since their widget is not drawn now, while the session
    still holds the value they had (so a setting put back to its default, or a text grown too long
    for a link, stays out). Kept per page: the widgets of other pages keep their values too.
    Only a widget's parameter is kept: the others (?run=, ?lesson=) have no session value."""
    state = st.session_state
    kept = state.setdefault(KEPT, {})
    params = current_params()
    missing = object()
    params |= {key: text for key, (text, value) in kept.get(page, {}).items()
               if key not in params and state.get(key, missing) == value}
    kept[page] = {key: (text, copy.deepcopy(state[key])) for key, text in params.items() if key in state}
    return params


def link(page_url: str, params: Mapping[str, str | list[str]]) -> str:
    """The page's address with `params` as its query string (any old query string replaced)."""
    scheme, host, path, _, _ = urlsplit(page_url)
    return urlunsplit((scheme, host, path, urlencode(params, doseq=True), ""))


def copy_link(page: str) -> None:
    """A popover with the link of `page` (its title) in a code box: its copy button is the copy-link
    button (Streamlit has no clipboard API). Drawn after the page, so the link has the page's last changes."""
    with st.popover("🔗 Copy link", width="stretch"):
        st.caption("This page with its settings, to share or to open on another computer:")
        st.code(link(st.context.url or "", page_params(page)), language=None, wrap_lines=True)
        left_out = st.session_state.get(LEFT_OUT)
        if left_out:
            st.caption(f"Left out, too long for a link: {', '.join(dict.fromkeys(left_out))}.")
