"""The "Experts" tab, shown for mixture-of-experts models: where each layer's router sent each
token of the text, how evenly the experts share the work, and one token's choices in words."""

from __future__ import annotations

import streamlit as st

from explorer.attention_tabs.view import AttentionView
from explorer.checkpoint_cache import cached_on_checkpoint
from explorer.expert_charts import load_figure, routing_html, token_route_lines
from explorer.plain_text import plain
from explorer.widgets import chart
from lm.checkpoint import Checkpoint
from lm.moe import Routing, routing


@cached_on_checkpoint(max_entries=6, spinner="Reading the routers…")
def expert_routing(checkpoint: Checkpoint, ids: tuple[int, ...]) -> Routing:
    return routing(checkpoint.model, list(ids))


def has_experts(view: AttentionView) -> bool:
    """Whether any model shown has a router: the tab appears only then."""
    return any(model.checkpoint.model.config.n_experts for model in view.models.values())


def render_experts(view: AttentionView) -> None:
    for name, model, place in view.side_by_side():
        config = model.checkpoint.model.config
        with place:
            if view.comparing:
                st.subheader(name)
            if not config.n_experts:
                st.info("This model is dense: every token goes through the same MLP in each layer.")
                continue
            found = expert_routing(model.checkpoint, model.run.ids)
            if found is None:
                continue
            mixing = (f"its best {config.experts_top_k} and mixes their outputs by its weights"
                      if config.experts_top_k > 1 else "its best one and scales its output by the router's probability")
            st.caption(f"Each layer's MLP is {config.n_experts} experts: a router sends each token to {mixing}. "
                       "Colour and number: the expert a token went to most (hover it for all).")
            text, side = (st.container(), st.container()) if view.comparing else st.columns((2, 1))
            text.html(routing_html(found, model.run.labels))
            with side:
                token_choices(name, model.run.labels, found)
                chart(load_figure(found, 90 + 45 * config.n_layer), f"att_load_{name}", f"{name}-expert-load")


def token_choices(name: str, labels: tuple[str, ...], found: Routing) -> None:
    """A token's experts in every layer, as a line each: what a class reads aloud."""
    position = st.selectbox("A token's experts", range(len(labels)), index=len(labels) - 1,
                            key=f"att_expert_token_{name}", format_func=lambda i: f"#{i} {labels[i]}")
    st.markdown("  \n".join(plain(line) for line in token_route_lines(found, position)))
