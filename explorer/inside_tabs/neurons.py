"""The "Neurons" tab: the MLP neurons that fire most on one token of the text, and the passages
of a corpus sample where each fires most (indexed in the background, once per model)."""

from __future__ import annotations

import streamlit as st

from explorer.checkpoint_cache import cached_on_checkpoint
from explorer.inside_tabs.view import InsideView
from explorer.neuron_index_build import Build, neuron_index
from explorer.neuron_snippets import snippet_html
from explorer.plain_text import plain
from lm.checkpoint import Checkpoint
from lm.config import MLPS
from lm.neurons import top_neurons
from lm.trace import UnsupportedArchitecture

COUNT = 6  # neurons shown
POLL_S = 1.0  # how often the tab looks whether the index is ready


@cached_on_checkpoint(max_entries=32, spinner="Reading the neurons…")
def strongest(checkpoint: Checkpoint, ids: tuple[int, ...], position: int) -> tuple[tuple[int, int, float], ...]:
    return top_neurons(checkpoint.model, list(ids), position, COUNT)


def render_neurons(view: InsideView) -> None:
    with view.side():
        position = view.choose_position("Token: the neurons that fire most on it")
    try:
        found = strongest(view.checkpoint, view.ids, position)
        build = neuron_index(view.checkpoint)
    except UnsupportedArchitecture as exc:
        st.info(plain(f"{view.name}: {exc}."))
        return
    except OSError:
        st.error(f"{view.name} has disappeared from disk; choose another model.")
        return
    if found is None:
        return
    st.markdown(f"The neurons that fire most on **#{position} {plain(view.labels[position])}**, over every layer:")
    building = not build.finished

    def neurons() -> None:  # redrawn every POLL_S while the index is built, then once more in full
        if building and build.finished:
            st.rerun()
        show_neurons(view, found, build)

    st.fragment(neurons, run_every=POLL_S if building else None)()
    config = view.checkpoint.model.config
    st.caption(
        f"A neuron is one of an MLP's hidden units ({config.mlp_width:,} per layer here), after its activation, "
        f"{MLPS[config.mlp]}: large when the pattern it detects is there. Reading what a neuron's strongest "
        "passages share is a guess at its job; many neurons respond to several unrelated things."
    )


def show_neurons(view: InsideView, found: tuple[tuple[int, int, float], ...], build: Build) -> None:
    """Each neuron with its value here, and its passages once the index is built."""
    if not build.finished:
        st.progress(build.done / build.total if build.total else 0.0,
                    f"Indexing a corpus sample to find where these neurons fire (once per model): "
                    f"{build.done} of {build.total or '…'} passages…")
    elif build.error is not None:
        st.warning(plain(f"The corpus sample could not be indexed: {build.error}"))
    elif build.index is None:
        st.info("No corpus sample on this machine to find where else these neurons fire: download Tiny "
                "Shakespeare on the Train page (or Prepare this machine for class on Home).")
    index = build.index if build.finished else None
    for layer, neuron, value in found:
        st.markdown(f"**Layer {layer}, neuron {neuron}**: {value:.2f} here")
        if index is not None:
            passages = [snippet_html([view.label_of(i) for i in index.windows[w]], t, v)
                        for v, w, t in index.examples(layer, neuron)]
            st.html("".join(passages))
    if index is not None:
        st.caption(f"Passages from {build.description}: where each neuron fires most, the token marked, its value "
                   "in brackets.")
