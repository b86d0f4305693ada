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
from streamlit.delta_generator import DeltaGenerator

from explorer.url_state import BIND

PARAM = "presenter"  # ?presenter=true
HIDE = "hide"  # ?hide=name,name
DRAWN = "presenter_drawn_controls"  # session key: the controls this run of the page drew
ADVANCED_PREFIX, CONTROL_PREFIX = "advanced-", "control-"
CONTROLS_KEY = "presenter-controls"  # the column beside the picture: rows of controls in it stack
FONT_SIZE = 24  # px, the page's base size in presenter view (the app's usual is 18)
NAME = re.compile(r"[A-Za-z0-9_-]+")  # a widget key; anything else in ?hide= is ignored (it goes into CSS)
CHART_FONT = dict(size=22, color="#000000")
TICK_FONT = dict(size=18, color="#000000")  # numbers on an axis: smaller than titles, so they fit between ticks
LINE_WIDTH = 4
WEIGHTED = "weighted"  # a trace's meta when its line width carries a value (restyle leaves it alone)
# A chart's height on a projector: what is left of a 720-pixel screen under the slim header, the
# page title and a two-row tab strip (about 230 px), so the whole chart is on the first screen.
CHART_HEIGHT = 470

# Every tab in sight in either view (a second row if need be): the Attention page's eight
# tabs need about 850 px, more than a 1280-px screen leaves beside the sidebar.
ALWAYS_CSS = """
.stApp [role="tablist"] { flex-wrap: wrap; overflow: visible; row-gap: 0.2rem; }
"""

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
/* The first screen is for the picture: a slim header and margins, headings not much larger than text. */
[data-testid="stHeader"] {{ height: 2.2rem; min-height: 0; background: transparent; }}
.stMainBlockContainer {{ padding: 2.4rem 1.2rem 1rem !important; max-width: none !important; }}
.stApp h1 {{ font-size: 1.6rem !important; padding: 0 0 0.2rem !important; }}
.stApp h2 {{ font-size: 1.35rem !important; }}
.stApp h3, .stApp h4 {{ font-size: 1.1rem !important; padding: 0.2rem 0 !important; }}
.stApp [data-testid="stVerticalBlock"] {{ gap: 0.6rem; }}
.stApp [role="tab"] p {{ font-size: 0.85rem; }}
.stApp button p, .stApp [data-testid="stMetricLabel"] *, .stApp [data-testid="stWidgetLabel"] p {{
    white-space: normal !important; overflow-wrap: break-word; text-overflow: clip; }}
.stApp button {{ padding-left: 0.5rem; padding-right: 0.5rem; }}
.stApp button p {{ font-size: 0.85rem; }}
.stApp [data-testid="stMetricValue"] {{ font-size: 1.5rem; }}
.stApp .token-chips {{ font-size: 0.8rem !important; line-height: 1.6 !important; }}
.stApp .gen-text {{ font-size: 1rem !important; line-height: 1.9 !important; }}
.st-key-{CONTROLS_KEY} [data-testid="stHorizontalBlock"] {{ flex-direction: column; }}
.st-key-{CONTROLS_KEY} [data-testid="stHorizontalBlock"] > [data-testid="stColumn"] {{ width: 100% !important; flex: 1 1 auto !important; }}
"""


def toggle() -> bool:
    """The sidebar switch, drawn by app.py before every page; kept in the URL, so it survives a refresh."""
    return st.sidebar.toggle(
        "🎓 Presenter view", key=PARAM, bind=BIND,
        help="For a projector: larger text, black on white, thicker chart lines, and advanced controls hidden.",
    )


def is_on() -> bool:
    return bool(st.session_state.get(PARAM))


def page_title(title: str, intro: str) -> DeltaGenerator:
    """The page's title and what it is for; in presenter view the text goes behind the title's
    (?) so the first screen keeps its room for the picture (the teacher says it anyway).
    Returns a place for the page's first control (its model): beside the title in presenter view."""
    if is_on():
        title_col, bar = st.columns([3, 2], vertical_alignment="bottom")
        title_col.title(title, help=intro)
        return bar
    st.title(title)
    st.write(intro)
    return st.container()


def beside(spec: tuple[float, float] = (1, 3)) -> tuple[DeltaGenerator, DeltaGenerator]:
    """Where a page draws its controls and its picture: side by side in presenter view, so the
    picture starts at the top of the screen; one above the other otherwise."""
    if is_on():
        controls, picture = st.columns(spec, gap="medium")
        return controls.container(key=CONTROLS_KEY), picture
    return st.container(), st.container()


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
    rules = [ALWAYS_CSS, PRESENTER_CSS] if presenting else [ALWAYS_CSS]
    rules += [f".st-key-{prefix}{name} {{ display: none !important; }}"
              for name in hide for prefix in (ADVANCED_PREFIX, CONTROL_PREFIX)]
    return "\n".join(rules)


def apply_style() -> None:
    """Inject this view's styles; app.py calls it before every page (and so starts the page's
    list of drawn controls afresh)."""
    st.session_state[DRAWN] = []
    if is_on():
        st.set_page_config(initial_sidebar_state="collapsed")  # the projector needs the width
    st.html(f"<style>{css(is_on(), hidden())}</style>")


def restyle(fig: go.Figure) -> go.Figure:
    """A copy of the figure for the projector: larger black text, thicker lines and markers, and
    no taller than the first screen leaves. Axes whose builder chose a tick font (token labels,
    spaced for that size) keep its size and only turn black."""
    fig = go.Figure(fig)
    fig.update_layout(font=CHART_FONT, title_font=CHART_FONT, legend_font=TICK_FONT,
                      height=min(fig.layout.height or CHART_HEIGHT, CHART_HEIGHT))
    for axis in [*fig.select_xaxes(), *fig.select_yaxes()]:
        chosen = axis.tickfont.size
        axis.update(tickfont=dict(size=chosen or TICK_FONT["size"], color="#000000"), title_font=CHART_FONT,
                    linewidth=2, linecolor="#000000")
    fig.for_each_trace(thicken, selector=dict(type="scatter"))
    return fig


def thicken(trace) -> None:
    """Projector-thick lines, except where the width means something (meta=WEIGHTED)."""
    if trace.meta != WEIGHTED:
        trace.line.width = LINE_WIDTH
