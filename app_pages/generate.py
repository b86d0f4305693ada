"""Generate: watch a model write one token at a time, see why it chose each token, and
measure how surprised it is by any text (its loss and perplexity)."""

import streamlit as st

from explorer import presenter
from explorer.generate_inputs import prompt_ids, prompt_input, sampling_controls, stepwise_toggle
from explorer.generate_stepwise import step_by_step
from explorer.generate_stream import write_at_once
from explorer.score_view import score_a_text
from explorer.url_state import BIND
from explorer.widgets import model_picker
from lm.generate import end_of_text_id

bar = presenter.page_title(
    "✍️ Generate",
    "A model writes by predicting a probability for every possible next token, drawing one, "
    "appending it and repeating. Watch it happen, then pick any token to see what else it could have written.",
)

with bar:
    checkpoint = model_picker("gen_model")
if checkpoint is None:
    st.stop()
end_id = end_of_text_id(checkpoint.tokenizer)
generate_tab, score_tab = st.tabs(["Generate text", "Score a text"], key="gen_tab", bind=BIND)

with generate_tab:
    controls, picture = presenter.beside()
    with controls:
        prompt = prompt_input()
        settings = sampling_controls()
        stepwise = stepwise_toggle()
        ids = prompt_ids(prompt, checkpoint.tokenizer, end_id, checkpoint.model.config.block_size)
    with picture:
        if stepwise:
            step_by_step(checkpoint, ids, settings, end_id)
        else:
            write_at_once(checkpoint, ids, settings, end_id)

with score_tab:
    score_a_text(checkpoint.model, checkpoint.tokenizer)
