"""Attention: where each token looks, head by head; the arithmetic of one head; what the model is made of."""

import streamlit as st

from explorer import presenter
from explorer.attention_tabs import ablation, across_training, detectors, experts, maps, model, statistics, step_through
from explorer.attention_tabs.inputs import choose_layer_and_head, choose_models, read_text, show_tokens, text_input
from explorer.attention_tabs.view import AttentionView
from explorer.widgets import open_tab_only
TABS = {  # tab name → what draws it, in the order shown
    "Attention map": maps.render_map,
    "All heads": maps.render_all_heads,
    "Head detectors": detectors.render_detectors,
    "Across training": across_training.render_across_training,
    "Ablation": ablation.render_ablation,
    "Step through one head": step_through.render_step_through,
    "Head statistics": statistics.render_statistics,
    "Model view": model.render_model_view,
}

presenter.page_title(
    "🎯 Attention",
    "Inside each block of a GPT, every token asks a question (its query), compares it with what "
    "every earlier token offers (their keys), and takes a mix of their values. Type a text and see "
    "where each token looks.",
)
controls, picture = presenter.beside()  # in presenter view the inputs sit left of the tabs
with controls:
    models = read_text(choose_models(), text_input())
    if models is None:
        st.stop()
    show_tokens(models)
    view = AttentionView(models, *choose_layer_and_head(models), controls if presenter.is_on() else None)

with picture:
    open_tab_only(TABS | ({"Experts": experts.render_experts} if experts.has_experts(view) else {}), view, "att_tab")
