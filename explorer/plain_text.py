"""Text from outside the app (an address's ?run=, a file or run name, an error message that
quotes either, an imported run's records) shown in Streamlit's Markdown elements (st.error,
st.warning, st.markdown, …) as the characters it is: `![x](http://…)` must not load an image
for everyone who opens a link or watches a run."""

from __future__ import annotations

import re

# What starts Markdown anywhere in a line: links and images need [ ], autolinks and HTML < >,
# emphasis * and _ at a word's edge (r50k_base stays as it is), code `, tables |, ~~, LaTeX $,
# Streamlit's :colour[…] its [. What starts it only at a line's start: headings, lists, quotes.
ANYWHERE = re.compile(r"[\\`*\[\]<>|~$]|(?<!\w)_|_(?!\w)")
LINE_START = re.compile(r"^(\s*)([-+=#])|^(\s*\d+)([.)])", re.MULTILINE)


def plain(text: object) -> str:
    """`text` with what Markdown would act on escaped, for a Markdown element to show it as it is."""
    escaped = ANYWHERE.sub(lambda m: "\\" + m.group(0), str(text))
    return LINE_START.sub(lambda m: f"{m.group(1)}\\{m.group(2)}" if m.group(2) else f"{m.group(3)}\\{m.group(4)}", escaped)
