"""Attention: where each token looks, head by head; the arithmetic of one head; what the model is made of."""

import streamlit as st

from explorer.attention_tabs import ablation, across_training, detectors, maps, model, statistics, step_through
from explorer.attention_tabs.inputs import choose_layer_and_head, read_text, show_tokens
from explorer.attention_tabs.view import AttentionView
from explorer.url_state import BIND, bind_text
from explorer.widgets import model_picker

DEFAULT_TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak."
MAX_CHARS = 20_000
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

st.title("🎯 Attention")
st.write(
    "Inside each block of a GPT, every token asks a question (its query), compares it with what "
    "every earlier token offers (their keys), and takes a mix of their values. Type a text and see "
    "where each token looks."
)

left, right = st.columns(2)
with left:
    first = model_picker("att_model", "Model")
if first is None:
    st.stop()
with right:
    compare = st.toggle("Compare with a second model", key="att_compare", bind=BIND,
                        help="For example the same training run at step 0 and at its end.")
    second = model_picker("att_model_b", "Second model", index=1) if compare else None

text = st.text_area("Text", DEFAULT_TEXT, height=110, max_chars=MAX_CHARS, key="att_text",
                    bind=bind_text("att_text", "the text"))
if not text.strip():
    st.info("Type some text above to see where each token looks.")
    st.stop()

models = read_text([first] + ([second] if second is not None else []), text)
if models is None:
    st.stop()
show_tokens(models)
view = AttentionView(models, *choose_layer_and_head(models))

tabs = st.tabs(list(TABS), key="att_tab", on_change="rerun", bind="query-params")
for tab, render in zip(tabs, TABS.values()):
    with tab:
        if tab.open:
            render(view)
