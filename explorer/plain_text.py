"""Text from outside the app (an address's ?run=, a file or run name, an error message that
quotes either, an imported run's records) shown in Streamlit's Markdown elements (st.error,
st.warning, st.markdown, …) as the characters it is: `![x](http://…)` must not load an image
for everyone who opens a link or watches a run."""

from __future__ import annotations

import re

MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&=\"'])")  # CommonMark lets any of these be escaped


def plain(text: object) -> str:
    """`text` with every Markdown character escaped, for a Markdown element to show it as it is."""
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", str(text))
