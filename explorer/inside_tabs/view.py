"""What every tab of the Inside the model page is drawn from: one model, the tokens of the
text it reads, and a place for the tab's own controls."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from explorer.generation_view import label_of
from explorer.inside_examples import Example
from lm.checkpoint import Checkpoint


@dataclass(frozen=True)
class InsideView:
    name: str
    checkpoint: Checkpoint
    ids: tuple[int, ...]
    labels: tuple[str, ...]  # each token's text, whitespace made visible
    example: Example  # the ready-made example chosen: the patching tab's defaults
    length: int  # the text's tokens before `ids` kept the last ones (inputs.MAX_TOKENS, the context)
    controls: DeltaGenerator | None = None  # beside the tabs in presenter view; above the picture otherwise

    def side(self) -> DeltaGenerator:
        return self.controls if self.controls is not None else st.container()

    def label_of(self, token: int) -> str:
        return label_of(self.checkpoint.tokenizer, token)

    @property
    def n_tokens(self) -> int:
        """The tokenizer's ids: a model's padded rows past them are no token."""
        return min(self.checkpoint.tokenizer.vocab_size, self.checkpoint.model.config.vocab_size)

    def link_head(self, column: DeltaGenerator, layer: int, head: int, label: str, help: str) -> None:
        """A link that opens this head's map of the text on the Attention page."""
        text = self.checkpoint.tokenizer.decode(list(self.ids))
        column.page_link("app_pages/attention.py", label=label, icon="🎯", help=help,
                         query_params={"att_model": self.name, "att_text": text, "att_layer": str(layer),
                                       "att_head": str(head), "att_tab": "Attention map"})

    def choose_position(self, label: str = "Position: the token after which the model guesses") -> int:
        """One position of the text (the last until another is picked), shared by the tabs that need one."""
        T = len(self.ids)
        if st.session_state.get("ins_position", T - 1) >= T:
            st.session_state["ins_position"] = T - 1
        return st.select_slider(label, list(range(T)), value=T - 1, key="ins_position",
                                format_func=lambda i: f"#{i} {self.labels[i]}")
