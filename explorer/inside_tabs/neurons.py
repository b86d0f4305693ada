"""The "Neurons" tab: the MLP neurons that fire most on one token of the text, and the passages
of a corpus sample where each fires most."""

from __future__ import annotations

import streamlit as st

from explorer.checkpoint_cache import cached_on_checkpoint
from explorer.inside_examples import corpus_sample
from explorer.inside_tabs.view import InsideView
from explorer.neuron_snippets import snippet_html
from explorer.plain_text import plain
from lm.checkpoint import Checkpoint
from lm.neurons import NeuronIndex, index_neurons, top_neurons
from lm.trace import UnsupportedArchitecture

COUNT = 6  # neurons shown


@cached_on_checkpoint(max_entries=32, spinner="Reading the neurons…")
def strongest(checkpoint: Checkpoint, ids: tuple[int, ...], position: int) -> list[tuple[int, int, float]]:
    return top_neurons(checkpoint.model, list(ids), position, COUNT)


@cached_on_checkpoint(max_entries=4, spinner="Finding where each neuron fires in a corpus sample (once per model)…")
def corpus_index(checkpoint: Checkpoint) -> tuple[str, NeuronIndex] | None:
    sample = corpus_sample(checkpoint)
    if sample is None:
        return None
    description, windows = sample
    return description, index_neurons(checkpoint.model, windows)


def render_neurons(view: InsideView) -> None:
    with view.side():
        position = view.choose_position("Token: the neurons that fire most on it")
    try:
        found = strongest(view.checkpoint, view.ids, position)
        indexed = corpus_index(view.checkpoint)
    except UnsupportedArchitecture as exc:
        st.info(plain(f"{view.name}: {exc}."))
        return
    if found is None:
        return
    if indexed is None:
        st.info("No corpus sample on this machine to find where else these neurons fire: download Tiny "
                "Shakespeare on the Train page (or Prepare this machine for class on Home).")
    st.markdown(f"The neurons that fire most on **#{position} {plain(view.labels[position])}**, over every layer:")
    for layer, neuron, value in found:
        st.markdown(f"**Layer {layer}, neuron {neuron}**: {value:.2f} here")
        if indexed is not None:
            description, index = indexed
            passages = [snippet_html([view.label_of(i) for i in index.windows[w]], t, v)
                        for v, w, t in index.examples(layer, neuron)]
            st.html("".join(passages))
    if indexed is not None:
        st.caption(f"Passages from {indexed[0]}: where each neuron fires most, the token marked, its value in brackets.")
    st.caption(
        "A neuron is one of an MLP's hidden units (4 × the model's width per layer), after GELU: large "
        "when the pattern it detects is there. Reading what a neuron's strongest passages share is a guess "
        "at its job; many neurons respond to several unrelated things."
    )
