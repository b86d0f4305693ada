"""The "Ablation" tab: switch heads off and compare the loss and the next-token
probabilities with and without them."""

from __future__ import annotations

import streamlit as st

from explorer.ablation import answer_loss, loss_change_figure, next_token_figure
from explorer.attention_tabs.view import AttentionView
from explorer.checkpoint_cache import cached_on_checkpoint
from explorer.generation_view import label_of
from explorer.url_state import BIND
from explorer.widgets import chart
from lm.checkpoint import Checkpoint
from lm.inspect import Prediction, predict
from lm.tasks import prompt_length, trained_task


@cached_on_checkpoint(max_entries=16, spinner="Running the model with heads switched off…")
def prediction(checkpoint: Checkpoint, ids: tuple[int, ...], off: tuple[tuple[int, int], ...]) -> Prediction:
    """The loss and next-token probabilities with the heads in `off` ((layer, head) pairs) silenced."""
    return predict(checkpoint.model, list(ids), checkpoint.tokenizer.vocab_size, off)


def render_ablation(view: AttentionView) -> None:
    with view.side():
        name = view.pick_model("att_abl_model")
        checkpoint, run = view.models[name].checkpoint, view.models[name].run
        config = checkpoint.model.config
        off = switched_off(config.n_layer, config.n_head)
        st.button("Switch every head back on", key="att_abl_reset", on_click=all_heads_on, args=(config.n_layer,))
    before = prediction(checkpoint, run.ids, ())
    after = prediction(checkpoint, run.ids, off) if off and before is not None else before
    if after is None:
        return
    if len(run.ids) > 1:
        with view.side():
            all_col, off_col, count_col = st.columns(3)
            scored = scored_from(checkpoint, run.ids)
            where = "" if scored == 0 else f" on the answer ({len(run.ids) - 1 - scored} tokens)"
            loss_before, loss_after = answer_loss(before, scored), answer_loss(after, scored)
            all_col.metric(f"Loss{where} with every head", f"{loss_before:.3f}")
            off_col.metric(f"Loss{where} with heads switched off", f"{loss_after:.3f}",
                           delta=f"{loss_after - loss_before:+.3f}" if off else None, delta_color="inverse")
            count_col.metric("Heads switched off", f"{len(off)} of {config.n_layer * config.n_head}")
        chart(loss_change_figure(before, after, list(run.labels)), "att_abl_losses", f"{name}-ablation-loss")
    else:
        st.info("The loss needs at least two tokens: type a longer text.")
    chart(next_token_figure(before, after, lambda i: label_of(checkpoint.tokenizer, i),
                            f"What comes after “{run.labels[-1]}”: the likeliest next tokens"),
          "att_abl_next", f"{name}-ablation-next-token")
    st.caption(
        "Switch heads off and watch what the model loses: a silenced head passes nothing on, the rest of "
        "the model runs as before. If the loss on your text jumps, that head was doing useful work here."
    )


def scored_from(checkpoint: Checkpoint, ids: tuple[int, ...]) -> int:
    """Where the headline loss counts from (an index into Prediction.losses): for a task's model,
    its answer, the positions it was trained on (its prompt is random letters nobody can predict),
    when the text has one; else every token (0)."""
    task = trained_task(checkpoint.training)
    prompt = prompt_length(task, checkpoint.tokenizer.decode(list(ids))) if task else None
    return prompt - 1 if prompt else 0


def switched_off(n_layer: int, n_head: int) -> tuple[tuple[int, int], ...]:
    """The ablation's head and layer pickers; (layer, head) pairs switched off."""
    st.markdown("**Switch off whole layers** (every head in them)")
    layer_options = list(range(n_layer))
    keep_valid("att_abl_layers", layer_options)
    layers_off = st.pills("Whole layers", layer_options, selection_mode="multi", key="att_abl_layers", bind=BIND,
                          format_func=lambda l: f"layer {l}", label_visibility="collapsed")
    st.markdown("**Switch off single heads**")
    off = {(l, h) for l in layers_off for h in range(n_head)}
    columns = st.columns(2 if n_layer > 1 else 1)
    for l in range(n_layer):
        key = f"att_abl_heads_{l}"
        keep_valid(key, list(range(n_head)))
        with columns[l % len(columns)]:
            heads = st.pills(f"Layer {l}", list(range(n_head)), selection_mode="multi", key=key, bind=BIND,
                             format_func=lambda h: f"head {h}", disabled=l in layers_off)
        off |= {(l, h) for h in heads}
    return tuple(sorted(off))


def keep_valid(key: str, options: list[int]) -> None:
    """Drop choices another model had but this one lacks."""
    if key in st.session_state:
        st.session_state[key] = [v for v in st.session_state[key] or [] if v in options]


def all_heads_on(n_layer: int) -> None:
    """Button callback: every layer and head picker emptied."""
    st.session_state["att_abl_layers"] = []
    for l in range(n_layer):
        st.session_state[f"att_abl_heads_{l}"] = []
