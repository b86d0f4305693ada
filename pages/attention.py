"""Attention: where each token looks, head by head; the arithmetic of one head; what the model is made of."""

import pandas as pd
import streamlit as st

from explorer.attention_view import (
    ANNOTATE_MAX, MAX_TOKENS, AttentionRun, attention_figure, block_diagram_html, config_rows, context_window,
    head_grid_figure, head_statistics, parameter_figure, query_rows, run_attention, scores_figure, size_estimates,
    uniform_entropy, value_mix, value_mix_figure,
)
from explorer.navigation import run_through_app
from explorer.token_view import chips_html, describe_tokens
from explorer.widgets import model_picker

DEFAULT_TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak."
MAX_CHARS = 20_000
ROW = 36  # table row height in pixels, so a short table is shown whole
TABS = ["Attention map", "All heads", "Step through one head", "Head statistics", "Model view"]

run_through_app()
st.title("🎯 Attention")
st.write(
    "Inside each block of a GPT, every token asks a question (its query), compares it with what "
    "every earlier token offers (their keys), and takes a mix of their values. Type a text and see "
    "where each token looks."
)


@st.cache_data(max_entries=6, show_spinner="Running the model…")
def forward(path: str, stamp: tuple[int, int], ids: tuple[int, ...], _checkpoint) -> AttentionRun:
    """Cached on the checkpoint's path, its weights file's mtime and size, and the token ids
    (a model object cannot be hashed, and a rewritten checkpoint must be run again)."""
    return run_attention(_checkpoint.model, _checkpoint.tokenizer, list(ids))


def attention_for(checkpoint, text: str) -> tuple[AttentionRun, int] | None:
    """The forward pass for the text's last tokens, and how many tokens were cut."""
    ids, dropped = context_window(checkpoint.tokenizer.encode(text), checkpoint.model.config.block_size)
    try:
        stat = (checkpoint.path / "model.safetensors").stat()
    except OSError:
        st.error(f"{checkpoint.path.name} has disappeared from disk; choose another model.")
        return None
    return forward(str(checkpoint.path), (stat.st_mtime_ns, stat.st_size), tuple(ids), checkpoint), dropped


def choose(label: str, key: str, count: int) -> int:
    """A row of buttons 0 … count−1; a choice the new model or text lacks falls back to the last."""
    if st.session_state.get(key, 0) >= count:
        st.session_state[key] = count - 1
    st.session_state.setdefault(key, 0)
    return st.segmented_control(label, list(range(count)), required=True, key=key)


def show_tokens(names: list[str], checkpoint, run: AttentionRun, dropped: int) -> None:
    block_size = checkpoint.model.config.block_size
    who = " and ".join(f"**{name}**" for name in names)
    st.markdown(f"{who} {'read' if len(names) > 1 else 'reads'} {len(run.ids)} tokens:")
    if dropped:
        reason = (
            f"it reads at most {block_size:,} tokens at once" if block_size <= MAX_TOKENS
            else f"this page shows at most {MAX_TOKENS} (its context is {block_size:,})"
        )
        st.warning(
            f"The text is {len(run.ids) + dropped:,} tokens long; {reason}, so only the last {len(run.ids)} are used."
        )
    st.html(chips_html(describe_tokens(checkpoint.tokenizer, run.ids)))


left, right = st.columns(2)
with left:
    first = model_picker("att_model", "Model")
if first is None:
    st.stop()
with right:
    compare = st.toggle("Compare with a second model", key="att_compare",
                        help="For example the same training run at step 0 and at its end.")
    second = model_picker("att_model_b", "Second model", index=1) if compare else None
checkpoints = [first] + ([second] if second is not None else [])

text = st.text_area("Text", DEFAULT_TEXT, height=110, max_chars=MAX_CHARS, key="att_text")
if not text.strip():
    st.info("Type some text above to see where each token looks.")
    st.stop()

names = [checkpoint.path.name for checkpoint in checkpoints]
if len(set(names)) < len(names):  # the same model twice
    names = [f"{name} ({which})" for name, which in zip(names, ("first", "second"))]
runs = {}
for name, checkpoint in zip(names, checkpoints):
    result = attention_for(checkpoint, text)
    if result is None:
        st.stop()
    runs[name] = (checkpoint, *result)
same_tokens = {}  # two models with one tokenizer read the same tokens: show them once
for name, (checkpoint, run, dropped) in runs.items():
    same_tokens.setdefault((run.labels, dropped), []).append(name)
for names_alike in same_tokens.values():
    show_tokens(names_alike, *runs[names_alike[0]])
st.caption("· is a space, ↵ a line break. Hover a token for its id.")

n_layer = min(run.weights.shape[0] for _, run, _ in runs.values())
n_head = min(run.weights.shape[1] for _, run, _ in runs.values())
layer_col, head_col = st.columns(2)
with layer_col:
    layer = choose("Layer", "att_layer", n_layer)
with head_col:
    head = choose("Head", "att_head", n_head)

tabs = dict(zip(TABS, st.tabs(TABS, key="att_tab", on_change="rerun", bind="query-params")))


def side_by_side():
    """(name, checkpoint, run, container) for each model: in columns when comparing."""
    places = st.columns(len(runs)) if len(runs) > 1 else [st.container()]
    for (name, (checkpoint, run, _)), place in zip(runs.items(), places):
        yield name, checkpoint, run, place


def show_maps(tab: str) -> None:
    """The chosen layer and head, large, for each model."""
    st.caption(
        "Row = the token looking (query), column = a token it looks at (key). Each row's weights add up to 1, "
        "and no token looks ahead: everything right of the diagonal is 0. Hover a cell for its tokens."
    )
    for name, _, run, place in side_by_side():
        place.plotly_chart(
            attention_figure(run, layer, head, f"{name}: layer {layer}, head {head}", compact=len(runs) > 1),
            width="stretch", key=f"att_{tab}_{name}",
        )


with tabs["Attention map"]:
    if tabs["Attention map"].open:
        show_maps("map")

with tabs["All heads"]:
    if tabs["All heads"].open:
        st.caption(
            "Every head of every layer at a glance. Look for a dark line just below the diagonal (each token "
            "looks at the one before it), a dark first column (everyone looks at the first token) or the "
            "diagonal itself (each token looks at itself). Pick a layer and head above: it is outlined here "
            "and opens large below."
        )
        for name, (_, run, _) in runs.items():
            st.plotly_chart(
                head_grid_figure(run.weights, (layer, head), name), width="stretch", key=f"att_grid_{name}"
            )
        show_maps("chosen")


def step_through(run: AttentionRun) -> None:
    T = len(run.ids)
    st.session_state.setdefault("att_query", T - 1)
    if st.session_state["att_query"] >= T:
        st.session_state["att_query"] = T - 1
    query = st.select_slider(
        "Query token: the token whose attention you follow", list(range(T)), key="att_query",
        format_func=lambda i: f"#{i} {run.labels[i]}",
    )
    if T > ANNOTATE_MAX:
        st.caption(f"The maps write their numbers in for texts of up to {ANNOTATE_MAX} tokens; here, hover a cell.")
    rows = query_rows(run, layer, head, query)
    best = max(range(len(rows)), key=lambda j: rows[j]["weight"])
    d = run.head_size
    steps = [
        (
            f"#### 1 · Scores: how well each query matches each key\n"
            f"Each token's vector is turned into a query q, a key k and a value v of {d} numbers. "
            f"Query #{query} with key #{best}: q·k / √{d} = "
            f"{rows[best]['q·k']:.3f} / {d ** 0.5:.2f} = **{rows[best]['score']:.3f}**.\n\n"
            f"Dividing by √{d} keeps the scores small enough for softmax not to saturate.",
            scores_figure(run, layer, head, query),
        ),
        (
            "#### 2 · The causal mask\n"
            "A token may not look at tokens after it: while the model writes, they do not exist yet. "
            "Their scores become −∞ (grey), and e^−∞ = 0.",
            scores_figure(run, layer, head, query, masked=True),
        ),
        (
            "#### 3 · Softmax: scores become weights\n"
            "Each row: e^(score − the row's largest score), divided by the row's sum. "
            "Positive numbers that add up to 1.",
            attention_figure(run, layer, head, "weights: the softmax of each row", highlight_row=query, compact=True),
        ),
    ]
    for number, (explanation, figure) in enumerate(steps):
        text_col, figure_col = st.columns([1, 2])
        text_col.markdown(explanation)
        figure_col.plotly_chart(figure, width="stretch", key=f"att_step_{number}")
    st.markdown(
        f"**Query #{query}, key by key:** score = q·k / √{d}, weight = e^(score − max) / Σ e^(score − max)"
    )
    st.dataframe(pd.DataFrame(rows), hide_index=True, row_height=ROW, height=min(460, ROW * (len(rows) + 1) + 3),
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in rows[0] if c != "key"})
    mix = value_mix(run, layer, head, query)
    st.markdown(
        f"#### 4 · Mixing the values\n"
        f"The output for query #{query} is the sum of every value vector times its weight: "
        f"{len(mix.labels)} rows below add up to the last one. This is what the head passes on."
    )
    st.plotly_chart(value_mix_figure(mix), width="stretch", key="att_mix")
    st.caption(
        f"Σ weight × value matches the model's own output for this head to within {mix.error:.1e} (float rounding)."
    )


with tabs["Step through one head"]:
    if tabs["Step through one head"].open:
        name = next(iter(runs)) if len(runs) == 1 else st.radio("Model", list(runs), horizontal=True, key="att_step")
        st.markdown(f"**{name}**, layer {layer}, head {head}: the real numbers for your text.")
        step_through(runs[name][1])

with tabs["Head statistics"]:
    if tabs["Head statistics"].open:
        st.caption(
            "Averages over every query token but the first (which can only look at itself). Entropy, in bits: "
            "0 when each token looks at a single token, more the more it spreads its attention. The three shares "
            "are the weight given to the previous token, to the first token and to itself; 'mostly' names a share "
            "of at least one half."
        )
        share = {c: st.column_config.ProgressColumn(c, min_value=0.0, max_value=1.0, format="%.2f")
                 for c in ("previous token", "first token", "itself")}
        share["entropy (bits)"] = st.column_config.NumberColumn(format="%.2f")
        for name, (_, run, _) in runs.items():  # one under the other: the tables need the width
            T = len(run.ids)
            if T < 2:
                st.info(f"{name}: head statistics compare where tokens look; type at least two tokens.")
                continue
            st.markdown(f"**{name}** · a head spreading evenly over its {T} tokens would score "
                        f"{uniform_entropy(T):.2f} bits")
            stats = pd.DataFrame(head_statistics(run.weights))
            st.dataframe(stats, hide_index=True, column_config=share, key=f"att_stats_{name}",
                         row_height=ROW, height=min(600, ROW * (len(stats) + 1) + 3))

with tabs["Model view"]:
    if tabs["Model view"].open:
        for name, checkpoint, _, place in side_by_side():
            with place:
                config = checkpoint.model.config
                st.subheader(name)
                sizes = list(size_estimates(config).items())
                for start in range(0, len(sizes), 3):
                    for column, (label, value) in zip(st.columns(3), sizes[start : start + 3]):
                        column.metric(label, value)
                st.caption(
                    "Training memory: weights, gradients and AdamW's two moments (16 bytes a parameter) plus "
                    "activations. FLOPs are per token (a FLOP is one multiply or add); training costs three forward "
                    "passes: the forward one and twice that backwards."
                )
                chart_col, config_col = st.columns(2) if len(runs) == 1 else (st.container(), st.container())
                chart_col.plotly_chart(parameter_figure(config), width="stretch", key=f"att_params_{name}")
                config_col.table(pd.DataFrame(config_rows(config)).set_index("setting"))
                st.markdown("**The model, top to bottom**")
                st.html(block_diagram_html(config))
                if checkpoint.training:
                    with st.expander("How it was trained"):
                        st.json(checkpoint.training)
