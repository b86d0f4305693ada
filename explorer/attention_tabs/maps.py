"""The "Attention map" and "All heads" tabs: the chosen head large (as a matrix or as lines),
and every head at a glance. A text longer than a map can label is shown a window at a time."""

from __future__ import annotations

import streamlit as st

from explorer import presenter
from explorer.attention_lines import lines_figure
from explorer.attention_maps import LABELLED, LABELLED_SMALL, attention_figure, head_grid_figure, tokens_window
from explorer.attention_tabs.view import AttentionView
from explorer.attention_view import AttentionRun
from explorer.url_state import BIND
from explorer.widgets import chart

KINDS = {"matrix": "Matrix", "lines": "Lines"}  # the label is the link's value: ?att_map_kind=Lines


def labelled_tokens(view: AttentionView) -> int:
    """How many tokens one map labels: fewer when it is small (beside another, or on a projector)."""
    return LABELLED_SMALL if view.comparing or presenter.is_on() else LABELLED


def choose_window(run: AttentionRun, limit: int, key: str) -> slice:
    """All the tokens when they fit; else a slider picks which `limit` of them the map shows."""
    T = len(run.ids)
    if T <= limit:
        return slice(0, T)
    end = st.select_slider(
        f"Tokens on the map ({limit} of {T} at a time)", list(range(limit - 1, T)), value=T - 1, key=key, bind=BIND,
        format_func=lambda e: f"#{e + 1 - limit}–#{e}",
        help="A map labels every token it shows; a longer text is shown a window at a time. "
             "Weights on tokens before the window are not drawn, so a row can add up to less than 1.",
    )
    return tokens_window(T, limit, end)


def choose_focus(run: AttentionRun, window: slice) -> int | None:
    """In the lines view, one token whose lines stand out (or none: every token alike)."""
    options = [None, *range(window.start, window.stop)]
    key = "att_lines_query"
    if st.session_state.get(key) not in options:
        st.session_state[key] = None
    return st.selectbox("Follow one token", options, key=key,
                        format_func=lambda i: "every token alike" if i is None else f"#{i} {run.labels[i]}")


def render_map(view: AttentionView, tab: str = "map") -> None:
    """The chosen layer and head, large, for each model (`tab` keeps the chart keys of two tabs apart)."""
    layer, head = view.layer, view.head
    first = next(iter(view.models.values())).run
    with view.side():
        kind = st.segmented_control("Draw the head as", list(KINDS), default="matrix", required=True,
                                    key=f"att_{tab}_kind", bind=BIND, format_func=KINDS.get)
        window = choose_window(first, labelled_tokens(view), f"att_{tab}_window")
        focus = choose_focus(first, window) if kind == "lines" else None
    for name, model, place in view.side_by_side():
        run = model.run
        span = tokens_window(len(run.ids), window.stop - window.start, window.stop - 1)
        title = f"{name}: layer {layer}, head {head}"
        with place:
            if kind == "lines":
                figure = lines_figure(run.weights[layer, head][span, span], run.labels[span], title,
                                      None if focus is None or focus >= len(run.ids) else focus, span.start)
            else:
                figure = attention_figure(run, layer, head, title, compact=view.comparing, window=span)
            chart(figure, f"att_{tab}_{name}", f"{name}-layer{layer}-head{head}-attention-{kind}")
    st.caption(
        "Row = the token looking (query), column = a token it looks at (key). Each row's weights add up to 1, "
        "and no token looks ahead: everything right of the diagonal is 0. Hover a cell for its tokens."
        if kind == "matrix" else
        "Left: each token looking (query); right: the tokens it may look at (keys, itself and before). "
        "The thicker and darker a line, the more attention. Lines under 0.01 are left out."
    )


def render_all_heads(view: AttentionView) -> None:
    for name, model in view.models.items():
        chart(head_grid_figure(model.run.weights, (view.layer, view.head), name), f"att_grid_{name}",
              f"{name}-all-heads")
    st.caption(
        "Every head of every layer at a glance. Look for a dark line just below the diagonal (each token "
        "looks at the one before it), a dark first column (everyone looks at the first token) or the "
        "diagonal itself (each token looks at itself). Pick a layer and head: it is outlined here "
        "and opens large below."
    )
    render_map(view, "chosen")
