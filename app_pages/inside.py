"""Inside the model: the logit lens, direct logit attribution, activation patching, embeddings and neurons."""

import streamlit as st

from explorer import presenter
from explorer.inside_tabs import attribution, embeddings, lens, neurons, patching
from explorer.inside_tabs.inputs import read_inputs
from explorer.widgets import open_tab_only

TABS = {  # tab name → what draws it, in the order shown
    "Logit lens": lens.render_lens,
    "Direct logit attribution": attribution.render_attribution,
    "Activation patching": patching.render_patching,
    "Embeddings": embeddings.render_embeddings,
    "Neurons": neurons.render_neurons,
}

presenter.page_title(
    "🔬 Inside the model",
    "Attention maps show where a head looks, not what the model does with it. Here you read the model's "
    "guess after every layer, split a prediction into what each head and MLP wrote, and switch one "
    "activation from one prompt into another to find which part causes the answer.",
)
controls, picture = presenter.beside()
with controls:
    view = read_inputs(controls if presenter.is_on() else None)
    if view is None:
        st.stop()

with picture:
    open_tab_only(TABS, view, "ins_tab")
