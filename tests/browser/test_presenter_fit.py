"""Presenter view on a projector: at 1280×720 and 1920×1080, on every page and every Attention
tab, the page's main picture lies on the first screen (no scrolling) and no text is cut.

"Cut" is measured, not eyeballed: a button, tab label, heading, metric or widget label whose
text is wider than its box (scrollWidth > clientWidth) is clipped or runs under its neighbour;
a tab strip wider than its box hides tabs; a chart title or legend outside the chart is cut;
a legend over an axis title, or two tick labels on top of each other, overlap."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import quote

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.conftest import ARTIFACTS, REPO, wait_until_idle
from tests.helpers import TINY_RUN

RUN = "presenter-fit"
# 48 tokens of a 320-token BPE: past the point where the old maps dropped every other label.
TEXT = ("First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. "
        "First Citizen: You are all resolved rather to die than to famish?")
SIZES = ((1280, 720), (1920, 1080))
PICTURE = ".js-plotly-plot, .token-chips, .gen-text, [data-testid='stImage'], [data-testid='stDataFrame']"
ATTENTION_TABS = ("Attention map", "All heads", "Head detectors", "Across training", "Ablation",
                  "Step through one head", "Head statistics", "Model view")


def pages() -> list[tuple[str, str]]:
    """(name, address) of every page and Attention tab, in presenter view."""
    attention = f"attention?att_model={RUN}&att_text={quote(TEXT)}&presenter=true&att_tab="
    return [
        ("home", "?presenter=true"),
        ("tokenizer", "tokenizer?presenter=true"),
        ("train", f"train?run={RUN}&presenter=true"),
        *[(f"attention-{tab.lower().replace(' ', '-')}", attention + quote(tab)) for tab in ATTENTION_TABS],
        ("attention-lines", attention + "Attention+map&att_map_kind=Lines"),
        ("generate", f"generate?gen_model={RUN}&gen_max_new=12&presenter=true"),
    ]


@pytest.fixture(scope="module")
def trained_run(app_url, app_home):
    """A finished tiny run with attention snapshots (Train's curves, Attention's "Across training")."""
    folder = app_home / "runs" / RUN
    options = TINY_RUN | dict(n_layer=2, block_size=64, max_steps=20, snapshot_every=10)
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    subprocess.run([sys.executable, "-m", "lm", "train", f"--out={folder}", "--data=tinyshakespeare", *flags],
                   cwd=REPO, env={**os.environ, "LM_DATA_DIR": str(app_home / "data")}, check=True,
                   capture_output=True, timeout=300)
    return folder


# Every chart on the page drawn (plotly draws after the script run ends).
DRAWN_JS = "[...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')].every(c => c.querySelector('.main-svg'))"

# Returns what is wrong on the page as it is now: text boxes narrower than their text, charts
# whose title or legend leaves the chart or covers an axis title, tick labels drawn over each other.
PROBLEMS_JS = """
() => {
  const problems = [];
  const visible = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0
      && getComputedStyle(el).visibility !== 'hidden' && el.closest('[data-testid="stSidebar"]') === null; };
  const name = el => (el.innerText || el.textContent || '').trim().slice(0, 40);
  const textBoxes = 'button, button *, [role="tab"], [role="tab"] *, [role="tablist"], h1, h2, h3, h4, '
      + '[data-testid="stMetricValue"], [data-testid="stMetricValue"] *, [data-testid="stMetricLabel"] *, '
      + '[data-testid="stWidgetLabel"] p';
  for (const el of document.querySelectorAll(textBoxes)) {
    if (visible(el) && name(el) && el.scrollWidth > el.clientWidth + 1)
      problems.push(`cut: <${el.tagName.toLowerCase()}> "${name(el)}" needs ${el.scrollWidth}px, has ${el.clientWidth}px`);
  }
  const overlap = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    if (!visible(plot)) continue;
    const box = plot.getBoundingClientRect();
    const title = plot.querySelector('.gtitle');
    const legend = plot.querySelector('.legend');
    for (const [what, el] of [['title', title], ['legend', legend]]) {
      if (!el) continue;
      const r = el.getBoundingClientRect();
      if (r.width && (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1))
        problems.push(`chart ${what} leaves its chart: "${name(el)}"`);
    }
    for (const axisTitle of plot.querySelectorAll('.xtitle, .ytitle, .gtitle')) {
      if (legend && axisTitle.getBoundingClientRect().width && overlap(legend.getBoundingClientRect(), axisTitle.getBoundingClientRect()))
        problems.push(`legend over "${name(axisTitle)}"`);
    }
    for (const axis of ['xtick', 'ytick']) {
      const ticks = [...plot.querySelectorAll(`.${axis} text`)].filter(t => t.textContent.trim())
          .map(t => ({t, r: t.getBoundingClientRect(), size: parseFloat(getComputedStyle(t).fontSize),
                      turned: /rotate\\((?!0[,)])/.test(t.getAttribute('transform') || '')}));
      const along = axis === 'xtick' ? (r => (r.left + r.right) / 2) : (r => (r.top + r.bottom) / 2);
      const byPlace = new Map();  // one map can draw two axes' ticks: compare neighbours on one line
      for (const tick of ticks) {
        const line = Math.round(axis === 'xtick' ? tick.r.top / 40 : tick.r.left / 80);
        byPlace.set(line, [...(byPlace.get(line) || []), tick]);
      }
      for (const row of byPlace.values()) {
        row.sort((a, b) => along(a.r) - along(b.r));
        for (let i = 1; i < row.length; i++) {
          const [a, b] = [row[i - 1], row[i]];
          const apart = along(b.r) - along(a.r);
          const crowded = (a.turned || axis === 'ytick') ? apart < 0.8 * a.size : overlap(a.r, b.r);
          if (crowded) { problems.push(`${axis} labels overlap: "${a.t.textContent}" and "${b.t.textContent}"`); break; }
        }
      }
    }
  }
  return problems;
}
"""


def pictures(page):
    """The pictures (charts, token chips, images, tables, generated text) of the open tab, or of
    the page when it has no tabs."""
    tab = page.locator("[data-testid='stMain'] [role='tabpanel']:not([hidden])")
    where = tab.first if tab.count() else page.locator("[data-testid='stMain']")
    return where.locator(f":is({PICTURE})")


def wait_for_picture(page) -> None:
    """A fragment (Train's live view) and plotly draw after the script run ends: wait for them."""
    try:
        pictures(page).first.wait_for(timeout=15_000)
    except PlaywrightTimeout:
        return  # no picture: the test says so
    page.wait_for_function(DRAWN_JS)


def main_picture_box(page) -> dict | None:
    found = pictures(page)
    return found.first.bounding_box() if found.count() else None


def show_picture(page, name: str) -> None:
    """Generate's picture is the text it writes: write some."""
    if name == "generate":
        page.get_by_role("button", name="Generate", exact=True).click()
        page.locator(".gen-text").first.wait_for()
        wait_until_idle(page)


def test_presenter_view_fits_a_projector(app_url, browser, trained_run):
    failures = []
    for width, height in SIZES:
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(60_000)
        for name, address in pages():
            page.goto(f"{app_url}/{address}")
            wait_until_idle(page)
            show_picture(page, name)
            wait_for_picture(page)
            page.wait_for_timeout(300)  # plotly lays out its labels after it draws
            where = f"{name} at {width}×{height}"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"presenter-{name}-{width}x{height}.png"))
            box = main_picture_box(page)
            if box is None:
                failures.append(f"{where}: no picture on the page")
            elif box["y"] < 0 or box["y"] + box["height"] > height + 1 or box["x"] + box["width"] > width + 1:
                failures.append(f"{where}: the main picture spans y {box['y']:.0f}–{box['y'] + box['height']:.0f}, "
                                f"past the first screen ({height}px)")
            if page.locator("[data-testid='stSidebar'][aria-expanded='true']").count():
                failures.append(f"{where}: the sidebar is open")
            failures += [f"{where}: {problem}" for problem in page.evaluate(PROBLEMS_JS)]
        context.close()
    assert not failures, "\n".join(failures)
