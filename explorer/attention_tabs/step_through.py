"""The "Step through one head" tab: the chosen head's arithmetic for one query token, with
the model's real numbers: scores, the causal mask, softmax, and the mix of values."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from explorer.architecture_steps import (
    kv_explanation, kv_groups_html, rope_explanation, rope_figure, rope_rotation, window_explanation,
)
from explorer.attention_maps import ANNOTATE_MAX, LABELLED_SMALL, scores_figure, tokens_window, weights_figure
from explorer.attention_tabs.inputs import layer_steps
from explorer.attention_tabs.view import AttentionView
from explorer.attention_view import AttentionRun, LayerSteps
from explorer.head_arithmetic import query_rows, value_mix, value_mix_figure
from explorer.presenter import control
from explorer.widgets import chart, table
from lm.config import GPTConfig


def render_step_through(view: AttentionView) -> None:
    with view.side():
        name = view.pick_model("att_step")
        model = view.models[name]
        query = choose_query(model.run)
    layer = layer_steps(model.checkpoint, model.run.ids, view.layer)
    if layer is None:
        return
    rows = query_rows(layer, view.head, query)
    architecture_steps(layer, model.checkpoint.model.config, view, query, rows)
    window = tokens_window(len(layer.labels), LABELLED_SMALL, query)  # the query's row is in the maps, at the foot
    for number, (explanation, figure) in enumerate(steps(layer, view.head, query, rows, window)):
        text_col, figure_col = st.columns([1, 2])
        text_col.markdown(explanation)
        with figure_col:
            chart(figure, f"att_step_{number}", f"layer{view.layer}-head{view.head}-query{query}-step{number + 1}")
    d = layer.scale_size
    st.markdown(
        f"**Query #{query}, key by key:** score = q·k / √{d}, weight = e^(score − max) / Σ e^(score − max)"
    )
    with control("att_step_table", advanced=True):
        table(pd.DataFrame(rows), 460,
              column_config={c: st.column_config.NumberColumn(format="%.4f") for c in rows[0] if c != "key"})
    mix = value_mix(layer, view.head, query)
    st.markdown(
        f"#### 4 · Mixing the values\n"
        f"The output for query #{query} is the sum of every value vector times its weight: "
        f"{len(mix.labels)} rows below add up to the last one. This is what the head passes on."
    )
    chart(value_mix_figure(mix), "att_mix", f"layer{view.layer}-head{view.head}-query{query}-value-mix")
    st.caption(
        f"Σ weight × value matches the model's own output for this head to within {mix.error:.1e} (float rounding). "
        f"**{name}**, layer {view.layer}, head {view.head}: the real numbers for your text."
        + (f" The maps write their numbers in for texts of up to {ANNOTATE_MAX} tokens; here, hover a cell."
           if len(layer.labels) > ANNOTATE_MAX else "")
        + (f" They show the {LABELLED_SMALL} tokens up to the query, each labelled; pick another query to move."
           if window.start > 0 else "")
    )


def architecture_steps(layer: LayerSteps, config: GPTConfig, view: AttentionView, query: int, rows: list[dict]) -> None:
    """What the model's architecture adds before the scores: RoPE's rotation of the query and a
    key, and the key/value head this query head shares (GQA)."""
    if config.rotary_dims:
        best = max(range(len(rows)), key=lambda j: rows[j]["weight"])
        with view.side():
            key = st.select_slider("Key token for the rotation", list(range(query + 1)), value=best,
                                   key=f"att_rope_key_{query}", format_func=lambda i: f"#{i} {layer.labels[i]}")
        rotation = rope_rotation(layer, config, view.head, query, key)
        text_col, figure_col = st.columns([1, 2])
        text_col.markdown(rope_explanation(rotation))
        with figure_col:
            chart(rope_figure(rotation, layer.labels[query], layer.labels[key]), "att_step_rope",
                  f"layer{view.layer}-head{view.head}-query{query}-key{key}-rope")
    if config.kv_heads != config.n_head:
        text_col, figure_col = st.columns([1, 2])
        text_col.markdown(kv_explanation(config.n_head, config.kv_heads, view.head))
        figure_col.html(kv_groups_html(config.n_head, config.kv_heads, view.head))


def choose_query(run: AttentionRun) -> int:
    """The token whose attention is followed: the last one until another is picked."""
    T = len(run.ids)
    st.session_state.setdefault("att_query", T - 1)
    if st.session_state["att_query"] >= T:
        st.session_state["att_query"] = T - 1
    return st.select_slider(
        "Query token: the token whose attention you follow", list(range(T)), key="att_query",
        format_func=lambda i: f"#{i} {run.labels[i]}",
    )


def steps(layer: LayerSteps, head: int, query: int, rows: list[dict], window: slice) -> list[tuple[str, object]]:
    """Steps 1 to 3, each an explanation and its figure: scores, the mask, softmax."""
    best = max(range(len(rows)), key=lambda j: rows[j]["weight"])
    d = layer.scale_size  # the head size, unless the model scales scores its own way (Gemma 3)
    return [
        (
            f"#### 1 · Scores: how well each query matches each key\n"
            f"Each token's vector is turned into a query q, a key k and a value v of {layer.head_size} numbers. "
            f"Query #{query} with key #{best}: q·k / √{d} = "
            f"{rows[best]['q·k']:.3f} / {d ** 0.5:.2f} = **{rows[best]['score']:.3f}**.\n\n"
            f"Dividing by √{d} keeps the scores small enough for softmax not to saturate.",
            scores_figure(layer, head, query, window=window),
        ),
        (
            "#### 2 · The causal mask\n"
            "A token may not look at tokens after it: while the model writes, they do not exist yet. "
            "Their scores become −∞ (grey), and e^−∞ = 0."
            + (f"\n\n{window_explanation(layer.window)}" if layer.window else ""),
            scores_figure(layer, head, query, masked=True, window=window),
        ),
        (
            "#### 3 · Softmax: scores become weights\n"
            "Each row: e^(score − the row's largest score), divided by the row's sum. "
            "Positive numbers that add up to 1.",
            weights_figure(layer.weights[head], layer.labels, "weights: the softmax of each row", highlight_row=query,
                           compact=True, window=window),
        ),
    ]
