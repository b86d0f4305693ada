"""Presenter view, for a projector: large type, black on white, thick chart lines, and the
advanced controls out of sight. A link or a lesson can also hide chosen controls from the
students (`?hide=gen_top_k,gen_top_p`).

Pages draw a control that may be hidden inside `control(name)`. Hidden controls are hidden
by CSS, not left out: the widget still runs, so it keeps its value and its place in the
link, and the page computes with it as before."""

from __future__ import annotations

import re

import plotly.graph_objects as go
import streamlit as st

from explorer.url_state import BIND

PARAM = "presenter"  # ?presenter=true
HIDE = "hide"  # ?hide=name,name
DRAWN = "presenter_drawn_controls"  # session key: the controls this run of the page drew
ADVANCED_PREFIX, CONTROL_PREFIX = "advanced-", "control-"
FONT_SIZE = 24  # px, the page's base size in presenter view (the app's usual is 18)
NAME = re.compile(r"[A-Za-z0-9_-]+")  # a widget key; anything else in ?hide= is ignored (it goes into CSS)
CHART_FONT = dict(size=22, color="#000000")
LINE_WIDTH = 4

PRESENTER_CSS = f"""
html {{ font-size: {FONT_SIZE}px !important; }}
.stApp, .stApp [data-testid="stSidebar"] {{ background: #ffffff; color: #000000; }}
.stApp p, .stApp li, .stApp label, .stApp h1, .stApp h2, .stApp h3, .stApp h4,
.stApp [data-testid="stCaptionContainer"], .stApp [data-testid="stCaptionContainer"] *,
.stApp [data-testid="stMetricLabel"], .stApp [data-testid="stWidgetLabel"] * {{ color: #000000 !important; }}
.stApp [data-testid="stMarkdownContainer"] p, .stApp [data-testid="stCaptionContainer"] {{ font-size: 1rem; }}
.stApp [data-testid="stVerticalBlockBorderWrapper"], .stApp [data-baseweb="input"],
.stApp [data-baseweb="select"] > div, .stApp [data-baseweb="textarea"] {{ border-width: 2px; border-color: #000000; }}
[class*="st-key-{ADVANCED_PREFIX}"] {{ display: none !important; }}
"""


def toggle() -> bool:
    """The sidebar switch, drawn by app.py before every page; kept in the URL, so it survives a refresh."""
    return st.sidebar.toggle(
        "🎓 Presenter view", key=PARAM, bind=BIND,
        help="For a projector: larger text, black on white, thicker chart lines, and advanced controls hidden.",
    )


def is_on() -> bool:
    return bool(st.session_state.get(PARAM))


def hidden() -> list[str]:
    """Controls the link hides, from ?hide=a,b (or ?hide=a&hide=b)."""
    names = (name.strip() for value in st.query_params.get_all(HIDE) for name in value.split(","))
    return [name for name in names if NAME.fullmatch(name)]


def control(name: str, advanced: bool = False):
    """A container for one control: hidden when the link lists `name` in ?hide=, and, if
    `advanced`, in presenter view. Use as `with control("gen_top_k", advanced=True): ...`.
    The names drawn in this run are what a lesson step can hide (drawn_controls)."""
    drawn = st.session_state.setdefault(DRAWN, [])
    if name not in drawn:
        drawn.append(name)
    return st.container(key=f"{ADVANCED_PREFIX if advanced else CONTROL_PREFIX}{name}")


def drawn_controls() -> list[str]:
    """The controls the page drew in this run, in order."""
    return list(st.session_state.get(DRAWN, []))


def css(presenting: bool, hide: list[str]) -> str:
    """The style sheet for this view: presenter styles if `presenting`, and rules hiding `hide`."""
    rules = [PRESENTER_CSS] if presenting else []
    rules += [f".st-key-{prefix}{name} {{ display: none !important; }}"
              for name in hide for prefix in (ADVANCED_PREFIX, CONTROL_PREFIX)]
    return "\n".join(rules)


def apply_style() -> None:
    """Inject this view's styles; app.py calls it before every page (and so starts the page's
    list of drawn controls afresh)."""
    st.session_state[DRAWN] = []
    style = css(is_on(), hidden())
    if style:
        st.html(f"<style>{style}</style>")


def restyle(fig: go.Figure) -> go.Figure:
    """A copy of the figure for the projector: larger black text, thicker lines and markers."""
    fig = go.Figure(fig)
    fig.update_layout(font=CHART_FONT, title_font=CHART_FONT)
    fig.update_xaxes(tickfont=CHART_FONT, title_font=CHART_FONT, linewidth=2, linecolor="#000000")
    fig.update_yaxes(tickfont=CHART_FONT, title_font=CHART_FONT, linewidth=2, linecolor="#000000")
    fig.update_traces(line_width=LINE_WIDTH, selector=dict(type="scatter"))
    return fig
