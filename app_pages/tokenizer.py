"""Tokenizer: how text becomes token ids, and how a byte-pair encoder learns its vocabulary."""

import streamlit as st

from explorer import presenter
from explorer.bpe_training import show_trained, take_new, train_controls, trained_bpe
from explorer.token_compare import DEFAULT_TEXT, compare_controls, compare_tokens, text_input
from explorer.tokenizers import tokenizer_choices
from explorer.url_state import BIND

presenter.page_title("🔤 Tokenizer", "A language model reads numbers, not letters. A tokenizer turns text into a "
                     "list of token ids and back.")
tokenize_tab, train_tab = st.tabs(["Tokenize text", "Train your own BPE"], key="tok_tab", bind=BIND)
trained = trained_bpe()

with tokenize_tab:
    controls, picture = presenter.beside((1, 4))  # two tokenizers' chips side by side need the width
    with controls:
        text = text_input()
        choices = tokenizer_choices(trained.tokenizer if trained else None)
        chosen, show_ids = compare_controls(choices, add_just_trained=take_new())
    with picture:
        compare_tokens(text, chosen, choices, show_ids)

with train_tab:
    st.write(
        "Byte-pair encoding starts from the 256 byte values and repeatedly joins the most frequent "
        "neighbouring pair into a new token."
    )
    train_controls()
    if trained is not None:
        show_trained(trained, sample=text or DEFAULT_TEXT)
