"""Warm the server once, in the background, after the first page is drawn: import what every
page imports (read from the pages themselves), plus the parts of plotly and pandas that load
on first use, so the first visit to each page in a class does not pay for them."""

from __future__ import annotations

import ast
import importlib
import threading
from pathlib import Path

PAGES_DIR = Path(__file__).resolve().parents[1] / "app_pages"
_lock = threading.Lock()
_started = False


def page_modules(pages_dir: Path = PAGES_DIR) -> list[str]:
    """Every module the page scripts import from, and the submodules they import by name, in order."""
    found: list[str] = []
    for page in sorted(pages_dir.glob("*.py")):
        for node in ast.walk(ast.parse(page.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [alias.name for alias in node.names]
    return list(dict.fromkeys(found))


def warm() -> None:
    """Import the pages' modules (a name that is not a module is skipped) and load plotly's trace
    types and pandas, which st.plotly_chart and st.dataframe would otherwise load on the first chart."""
    for name in page_modules():
        try:
            importlib.import_module(name)
        except ImportError:  # `from module import function`: the function is no module
            continue
    import pandas  # noqa: F401  st.dataframe's
    import plotly.graph_objects as go

    go.Figure([go.Scatter(x=[0], y=[0]), go.Heatmap(z=[[0]]), go.Bar(x=[0], y=[0])]).update_layout(title="warm")


def start_once() -> None:
    """Start warm() in a daemon thread, the first time only (app.py calls it after every page)."""
    global _started
    with _lock:
        if _started:
            return
        _started = True
    threading.Thread(target=warm, name="warm-up", daemon=True).start()
