"""The "Direct logit attribution" tab: how much each head and MLP writes towards one token."""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer.attention_maps import LABELLED_SMALL, tokens_window, weights_figure
from explorer.checkpoint_cache import cached_on_checkpoint
from explorer.inside_charts import attribution_figure
from explorer.inside_tabs.view import InsideView
from explorer.plain_text import plain
from explorer.widgets import chart
from lm.checkpoint import Checkpoint
from lm.inspect import attention_weights, predict
from lm.lens import Attribution, direct_attribution
from lm.trace import UnsupportedArchitecture

TOP_HEADS = 3
CHOICES = 5  # the model's likeliest tokens offered as the target


@cached_on_checkpoint(max_entries=32, spinner="Splitting the logit into its parts…")
def attribution(checkpoint: Checkpoint, ids: tuple[int, ...], position: int, target: int) -> Attribution:
    return direct_attribution(checkpoint.model, list(ids), position, target)


@cached_on_checkpoint(max_entries=16)
def weights(checkpoint: Checkpoint, ids: tuple[int, ...]) -> np.ndarray:
    return attention_weights(checkpoint.model, list(ids)).numpy()


@cached_on_checkpoint(max_entries=32)
def likeliest(checkpoint: Checkpoint, ids: tuple[int, ...], position: int, n_tokens: int) -> tuple[int, ...]:
    return np.argsort(-predict(checkpoint.model, list(ids[: position + 1]), n_tokens).next_probs)[:CHOICES].tolist()


def choose_target(view: InsideView, position: int) -> int:
    """The token whose logit is split: the model's likeliest at `position`, or the text's next token."""
    options = list(likeliest(view.checkpoint, view.ids, position, view.n_tokens) or ())  # the cached tuple is shared
    if position + 1 < len(view.ids) and view.ids[position + 1] not in options:
        options.append(view.ids[position + 1])
    if st.session_state.get("ins_target") not in options:
        st.session_state["ins_target"] = options[0]

    def name(token: int) -> str:
        where = " (the text's next token)" if position + 1 < len(view.ids) and token == view.ids[position + 1] else ""
        return f"{view.label_of(token)}{where}"

    return st.selectbox("Target token: whose logit to split", options, key="ins_target", format_func=name)


def render_attribution(view: InsideView) -> None:
    with view.side():
        position = view.choose_position()
        target = choose_target(view, position)
    try:
        found = attribution(view.checkpoint, view.ids, position, target)
    except UnsupportedArchitecture as exc:
        st.info(plain(f"{view.name}: {exc}."))
        return
    if found is None:
        return
    token = view.label_of(target)
    chart(attribution_figure(found, f"What pushes “{token}” after #{position} {view.labels[position]}"),
          "ins_dla", f"{view.name}-attribution-{position}-{target}")
    st.markdown(f"The parts add up to the logit of **{plain(token)}**: {found.values.sum():.3f} "
                f"(the model's own: {found.logit:.3f}).")
    open_top_heads(view, found, position)
    st.caption(("Each bar is what one part of the model writes into the residual stream at this position, read "
                "along the direction of the target's output row. " + linearisation(found) + " Direct only: what a "
                "head does through later layers is not counted here; activation patching measures that."))


def linearisation(found: Attribution) -> str:
    """How the norms were made linear, so that the parts add up: one final norm, (post-norm) every one, or
    (sandwich) each sublayer's output norm and the final one."""
    if found.norm_position == "sandwich":
        shifts = ' and their shifts β are bars of their own ("norm bias")' if "norm bias" in found.kinds else ""
        return ("This model has sandwich norms (as Gemma): each attention's and each MLP's whole output is normalised "
                "before it is added, and the final norm reads the stream at the end. Each of those norms is frozen at "
                f"its σ here ({found.frozen_norms} in all; the final one's 1/σ = {found.inverse_spread:.3f}), which "
                "makes it linear: a head's bar is its slice of the attention's output scaled by that norm's γ/σ, σ "
                f"being the spread of all the layer's heads together{shifts}, so the parts add up exactly. A head's "
                "bar is its push through that frozen scale, not what removing it would do: σ would then change.")
    if found.frozen_norms == 1:
        return ("The final norm divides by the spread σ of the whole residual at this position; σ is frozen at its "
                f"value here (1/σ = {found.inverse_spread:.3f}), which makes the norm linear, so the parts add up "
                "exactly.")
    return (f"This model is post-norm: each block normalises the stream after each addition, so a part reaches the "
            f"output through every later norm ({found.frozen_norms} in all). Each is frozen at its own σ here, the "
            "reading direction is carried back through them, and their shifts β are bars of their own (\"norm "
            "bias\"), so the parts add up exactly; a part's bar is its push through those frozen scales, not what "
            "removing it would do, since every norm would then rescale.")


def open_top_heads(view: InsideView, found: Attribution, position: int) -> None:
    """The heads that push hardest, with the first one's attention map and links to the Attention page."""
    heads = found.top_heads(TOP_HEADS)
    for column, (layer, head, value) in zip(st.columns(len(heads)), heads):
        view.link_head(column, layer, head, f"L{layer} H{head}: {value:+.2f}",
                       "Open this head's map on the Attention page")
    layer, head, value = heads[0]
    chart(weights_figure(weights(view.checkpoint, view.ids)[layer, head], view.labels,
                         f"The strongest head, layer {layer} head {head}: where each token looks",
                         highlight_row=position, compact=True,
                         window=tokens_window(len(view.ids), LABELLED_SMALL, position)),
          "ins_dla_map", f"{view.name}-layer{layer}-head{head}")
