"""The Attention page above its tabs: each model's forward pass over the text, the tokens
it read, and the layer and head every tab shows."""

from __future__ import annotations

import streamlit as st

from explorer.attention_tabs.view import ModelRun, shared_shape
from explorer.attention_view import MAX_TOKENS, AttentionRun, LayerSteps, context_window, run_attention, run_layer
from explorer.checkpoint_cache import cached_on_checkpoint
from explorer.token_view import chips_html, describe_tokens
from explorer.url_state import BIND, bind_text
from explorer.widgets import model_picker
from lm.checkpoint import Checkpoint

MAX_BUTTONS = 8  # layers or heads shown as a row of buttons; more get a slider
DEFAULT_TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak."
MAX_CHARS = 20_000


def choose_models() -> list[Checkpoint]:
    """The model, and a second one to compare with if asked; stops the page when there is none."""
    left, right = st.columns(2)
    with left:
        first = model_picker("att_model", "Model")
    if first is None:
        st.stop()
    with right:
        compare = st.toggle("Compare with a second model", key="att_compare", bind=BIND,
                            help="For example the same training run at step 0 and at its end.")
        second = model_picker("att_model_b", "Second model", index=1) if compare else None
    return [first] + ([second] if second is not None else [])


def text_input() -> str:
    """The text every model reads; stops the page while it is empty."""
    text = st.text_area("Text", DEFAULT_TEXT, height=110, max_chars=MAX_CHARS, key="att_text",
                        bind=bind_text("att_text", "the text"))
    if not text.strip():
        st.info("Type some text above to see where each token looks.")
        st.stop()
    return text


@cached_on_checkpoint(max_entries=6, spinner="Running the model…")
def attention_run(checkpoint: Checkpoint, ids: tuple[int, ...]) -> AttentionRun:
    return run_attention(checkpoint.model, checkpoint.tokenizer, list(ids))


@cached_on_checkpoint(max_entries=6, spinner="Running the model…")
def layer_steps(checkpoint: Checkpoint, ids: tuple[int, ...], layer: int) -> LayerSteps:
    """The step-through's one layer, a pass of its own: the rest of the page needs only the weights."""
    return run_layer(checkpoint.model, checkpoint.tokenizer, list(ids), layer)


def read_text(checkpoints: list[Checkpoint], text: str) -> dict[str, ModelRun] | None:
    """Each model's forward pass over the text's last tokens, by a name that tells them apart;
    None (with a message) when a model's weights have gone."""
    names = [checkpoint.path.name for checkpoint in checkpoints]
    if len(set(names)) < len(names):  # the same model twice
        names = [f"{name} ({which})" for name, which in zip(names, ("first", "second"))]
    models = {}
    for name, checkpoint in zip(names, checkpoints):
        ids, dropped = context_window(checkpoint.tokenizer.encode(text), checkpoint.model.config.block_size)
        run = attention_run(checkpoint, tuple(ids))
        if run is None:
            return None
        models[name] = ModelRun(checkpoint, run, dropped)
    return models


def show_tokens(models: dict[str, ModelRun]) -> None:
    """The tokens each model read; two models with one tokenizer read the same tokens: shown once."""
    alike: dict[tuple, list[str]] = {}
    for name, model in models.items():
        alike.setdefault((model.run.labels, model.dropped), []).append(name)
    for names in alike.values():
        model = models[names[0]]
        block_size, read = model.checkpoint.model.config.block_size, len(model.run.ids)
        who = " and ".join(f"**{name}**" for name in names)
        st.markdown(f"{who} {'read' if len(names) > 1 else 'reads'} {read} tokens:")
        if model.dropped:
            reason = (
                f"it reads at most {block_size:,} tokens at once" if block_size <= MAX_TOKENS
                else f"this page shows at most {MAX_TOKENS} (its context is {block_size:,})"
            )
            st.warning(
                f"The text is {read + model.dropped:,} tokens long; {reason}, so only the last {read} are used."
            )
        st.html(chips_html(describe_tokens(model.checkpoint.tokenizer, model.run.ids)))
    st.caption("· is a space, ↵ a line break. Hover a token for its id.")


def choose_layer_and_head(models: dict[str, ModelRun]) -> tuple[int, int]:
    """The layer and head every tab shows, among those all the models have."""
    n_layer, n_head = shared_shape(models)
    layer_col, head_col = st.columns(2)
    with layer_col:
        layer = choose("Layer", "att_layer", n_layer)
    with head_col:
        head = choose("Head", "att_head", n_head)
    return layer, head


def choose(label: str, key: str, count: int) -> int:
    """0 … count−1 as a row of buttons, or as a slider when there are too many to fit (GPT-2's 12,
    XL's 48); a choice the new model or text lacks falls back to the last."""
    if st.session_state.get(key, 0) >= count:
        st.session_state[key] = count - 1
    if count <= MAX_BUTTONS:
        return st.segmented_control(label, list(range(count)), default=0, required=True, key=key, bind=BIND)
    return st.select_slider(label, list(range(count)), value=0, key=key, bind=BIND)
