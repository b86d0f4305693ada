"""Attention: where each token looks, head by head; the arithmetic of one head; what the model is made of."""

import numpy as np
import pandas as pd
import streamlit as st

from explorer.ablation import Prediction, head_mask, loss_change_figure, next_token_figure, predict
from explorer.attention_view import (
    ANNOTATE_MAX, MAX_TOKENS, AttentionRun, attention_figure, block_diagram_html, config_rows, context_window,
    detector_figure, head_grid_figure, head_statistics, parameter_figure, query_rows, run_attention, scores_figure,
    size_estimates, top_heads, uniform_entropy, value_mix, value_mix_figure, weights_figure,
)
from explorer.generation_view import label_of
from explorer.presenter import control
from explorer.runs import read_metrics
from explorer.token_view import chips_html, describe_tokens, token_label
from explorer.training_snapshots import (
    SnapshotError, find_snapshots, history_figure, load_snapshot, nearest_step, read_detector_history,
)
from explorer.url_state import BIND, bind_text
from explorer.widgets import chart, model_picker
from lm.detectors import DETECTORS, PROBE_LENGTH, head_scores
from lm.tasks import probe_vocabulary

DEFAULT_TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak."
MAX_CHARS = 20_000
ROW = 36  # table row height in pixels, so a short table is shown whole
TABS = ["Attention map", "All heads", "Head detectors", "Across training", "Ablation", "Step through one head",
        "Head statistics", "Model view"]
MAX_BUTTONS = 8  # layers or heads shown as a row of buttons; more get a slider
TOP_HEADS = 4  # buttons that open the best-scoring heads

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


@st.cache_data(max_entries=6, show_spinner="Scoring every head…")
def detector_scores(path: str, stamp: tuple[int, int], ids: tuple[int, ...], _checkpoint) -> dict[str, np.ndarray]:
    """lm.detectors.head_scores, cached like `forward`; a task's model is probed with its task's symbols."""
    model = _checkpoint.model
    vocabulary = probe_vocabulary(_checkpoint.training, _checkpoint.tokenizer, model.config.block_size)
    return {name: scores.numpy() for name, scores in head_scores(model, list(ids), vocabulary=vocabulary).items()}


@st.cache_data(max_entries=16, show_spinner="Running the model with heads switched off…")
def prediction(path: str, stamp: tuple[int, int], ids: tuple[int, ...], off: tuple, _checkpoint) -> Prediction:
    """The loss and next-token probabilities with the heads in `off` ((layer, head) pairs) silenced."""
    config = _checkpoint.model.config
    mask = head_mask(config.n_layer, config.n_head, off) if off else None
    return predict(_checkpoint.model, list(ids), _checkpoint.tokenizer.vocab_size, mask)


@st.cache_data(max_entries=32, show_spinner=False)
def snapshot(path: str, step: int, mtime_ns: int, _snapshots) -> np.ndarray:
    return load_snapshot(_snapshots, step)


def weights_stamp(checkpoint) -> tuple[int, int] | None:
    """The weights file's mtime and size, the cache key of a checkpoint (None if it is gone)."""
    try:
        stat = (checkpoint.path / "model.safetensors").stat()
    except OSError:
        st.error(f"{checkpoint.path.name} has disappeared from disk; choose another model.")
        return None
    return stat.st_mtime_ns, stat.st_size


def attention_for(checkpoint, text: str) -> tuple[AttentionRun, int] | None:
    """The forward pass for the text's last tokens, and how many tokens were cut."""
    ids, dropped = context_window(checkpoint.tokenizer.encode(text), checkpoint.model.config.block_size)
    stamp = weights_stamp(checkpoint)
    if stamp is None:
        return None
    return forward(str(checkpoint.path), stamp, tuple(ids), checkpoint), dropped


def choose(label: str, key: str, count: int) -> int:
    """0 … count−1 as a row of buttons, or as a slider when there are too many to fit (GPT-2's 12,
    XL's 48); a choice the new model or text lacks falls back to the last."""
    if st.session_state.get(key, 0) >= count:
        st.session_state[key] = count - 1
    if count <= MAX_BUTTONS:
        return st.segmented_control(label, list(range(count)), default=0, required=True, key=key, bind=BIND)
    return st.select_slider(label, list(range(count)), value=0, key=key, bind=BIND)


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
    compare = st.toggle("Compare with a second model", key="att_compare", bind=BIND,
                        help="For example the same training run at step 0 and at its end.")
    second = model_picker("att_model_b", "Second model", index=1) if compare else None
checkpoints = [first] + ([second] if second is not None else [])

text = st.text_area("Text", DEFAULT_TEXT, height=110, max_chars=MAX_CHARS, key="att_text",
                    bind=bind_text("att_text", "the text"))
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
        with place:
            chart(attention_figure(run, layer, head, f"{name}: layer {layer}, head {head}", compact=len(runs) > 1),
                  f"att_{tab}_{name}", f"{name}-layer{layer}-head{head}-attention")


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
            chart(head_grid_figure(run.weights, (layer, head), name), f"att_grid_{name}", f"{name}-all-heads")
        show_maps("chosen")


def open_head(chosen_layer: int, chosen_head: int) -> None:
    """Button callback: choose the head above and show its map (widgets take new values before they are drawn)."""
    st.session_state["att_layer"] = min(chosen_layer, n_layer - 1)
    st.session_state["att_head"] = min(chosen_head, n_head - 1)
    st.session_state["att_tab"] = "Attention map"


with tabs["Head detectors"]:
    if tabs["Head detectors"].open:
        detector = st.segmented_control(
            "Detector", list(DETECTORS), default=next(iter(DETECTORS)), required=True, key="att_detector", bind=BIND,
            format_func=lambda d: d.replace("_", " "),
        )
        st.markdown(f"**{detector.replace('_', ' ')}:** {DETECTORS[detector]}")
        st.caption(
            "A score is the share of attention a head puts where that kind of head looks, averaged over your "
            "text's tokens (the first token is left out: it can only look at itself). 1 = always, 0 = never. "
            f"Induction is measured on {PROBE_LENGTH} random tokens shown twice: in the second half, a head that "
            "looks at the token after the current token's first appearance can predict what comes next by copying. "
            "The outlined cell is the layer and head chosen above."
        )
        for name, checkpoint, run, place in side_by_side():
            stamp = weights_stamp(checkpoint)
            if stamp is None:
                continue
            scores = detector_scores(str(checkpoint.path), stamp, run.ids, checkpoint)[detector]
            with place:
                chart(detector_figure(scores, detector, (layer, head), f"{name}: {detector.replace('_', ' ')} score"),
                      f"att_detectors_{name}", f"{name}-{detector}-scores")
                st.markdown("Open one of the highest-scoring heads in the **Attention map**:")
                for column, (top_layer, top_head, score) in zip(st.columns(TOP_HEADS), top_heads(scores, TOP_HEADS)):
                    column.button(
                        f"layer {top_layer} · head {top_head}: {score:.2f}", key=f"att_open_{name}_{top_layer}_{top_head}",
                        on_click=open_head, args=(top_layer, top_head), width="stretch",
                    )


def across_training(name: str, checkpoint) -> None:
    """Replay a run's attention snapshots: the chosen head's map at a step, and its detector scores beside the loss."""
    snapshots = find_snapshots(checkpoint.path)
    if snapshots is None:
        st.info(
            f"**{name}** has no attention snapshots. Train a model on the **Train** page: while it learns, a run "
            "saves the attention of every head on a fixed probe text every few steps (on by default), and this "
            "tab replays them next to the loss curve."
        )
        return
    steps = snapshots.steps
    key = f"att_train_step_{name}"
    if st.session_state.get(key) not in steps:
        st.session_state[key] = steps[-1]
    step = st.select_slider(
        "Training step", steps, key=key, format_func=lambda s: f"{s:,}",
        help="Drag to watch the chosen head change as the model learns.",
    )
    try:
        weights = snapshot(str(snapshots.folder), step, snapshots.path(step).stat().st_mtime_ns, snapshots)
    except (SnapshotError, OSError) as exc:
        st.error(f"{name}: {exc}")
        return
    labels = tuple(token_label(token.encode("utf-8")) for token in snapshots.tokens)
    history = read_detector_history(snapshots.folder)
    map_col, chart_col = st.columns([5, 6])
    if layer < weights.shape[0] and head < weights.shape[1]:
        with map_col:
            chart(weights_figure(weights[layer, head], labels, f"{name}: layer {layer}, head {head} at step {step:,}",
                                 compact=True),
                  f"att_train_map_{name}", f"{name}-layer{layer}-head{head}-step{step}")
    with chart_col:
        chart(history_figure(read_metrics(snapshots.folder), history, layer, head, step),
              f"att_train_history_{name}", f"{name}-layer{layer}-head{head}-over-training")
    scores = history.at(nearest_step(history.steps, step)) if history.steps else None
    if scores is not None:
        shares = " · ".join(
            f"{detector.replace('_', ' ')} {values[layer, head]:.2f}" for detector, values in scores.items()
            if layer < values.shape[0] and head < values.shape[1]
        )
        st.caption(f"Layer {layer}, head {head} at step {nearest_step(history.steps, step):,}: {shares}")


with tabs["Across training"]:
    if tabs["Across training"].open:
        st.caption(
            "A training run saves every head's attention on one fixed probe text every few steps. Pick a layer "
            "and head above, then drag the slider through training: the map shows the head at that step; the "
            "chart shows its detector scores over all steps under the loss curve, so the moment a head learns "
            "its job lines up with the loss dropping."
        )
        for name, (checkpoint, _, _) in runs.items():  # one under the other: each needs the width
            across_training(name, checkpoint)


def pick_model(key: str) -> str:
    """With two models, which one a tab works on."""
    return next(iter(runs)) if len(runs) == 1 else st.radio("Model", list(runs), horizontal=True, key=key)


def switched_off(model_layers: int, model_heads: int) -> tuple[tuple[int, int], ...]:
    """The ablation's head and layer pickers; (layer, head) pairs switched off."""
    st.markdown("**Switch off whole layers** (every head in them)")
    layer_options = list(range(model_layers))
    _keep_valid("att_abl_layers", layer_options)
    layers_off = st.pills("Whole layers", layer_options, selection_mode="multi", key="att_abl_layers", bind=BIND,
                          format_func=lambda l: f"layer {l}", label_visibility="collapsed")
    st.markdown("**Switch off single heads**")
    off = {(l, h) for l in layers_off for h in range(model_heads)}
    columns = st.columns(2 if model_layers > 1 else 1)
    for l in range(model_layers):
        key = f"att_abl_heads_{l}"
        _keep_valid(key, list(range(model_heads)))
        with columns[l % len(columns)]:
            heads = st.pills(f"Layer {l}", list(range(model_heads)), selection_mode="multi", key=key, bind=BIND,
                             format_func=lambda h: f"head {h}", disabled=l in layers_off)
        off |= {(l, h) for h in heads}
    return tuple(sorted(off))


def _keep_valid(key: str, options: list[int]) -> None:
    """Drop choices another model had but this one lacks."""
    if key in st.session_state:
        st.session_state[key] = [v for v in st.session_state[key] or [] if v in options]


def all_heads_on(model_layers: int) -> None:
    st.session_state["att_abl_layers"] = []
    for l in range(model_layers):
        st.session_state[f"att_abl_heads_{l}"] = []


with tabs["Ablation"]:
    if tabs["Ablation"].open:
        st.caption(
            "Switch heads off and watch what the model loses: a silenced head passes nothing on, the rest of "
            "the model runs as before. If the loss on your text jumps, that head was doing useful work here."
        )
        name = pick_model("att_abl_model")
        checkpoint, run, _ = runs[name]
        config = checkpoint.model.config
        off = switched_off(config.n_layer, config.n_head)
        st.button("Switch every head back on", key="att_abl_reset", on_click=all_heads_on, args=(config.n_layer,))
        stamp = weights_stamp(checkpoint)
        if stamp is not None:
            before = prediction(str(checkpoint.path), stamp, run.ids, (), checkpoint)
            after = prediction(str(checkpoint.path), stamp, run.ids, off, checkpoint) if off else before
            total = config.n_layer * config.n_head
            if len(run.ids) > 1:
                all_col, off_col, count_col = st.columns(3)
                all_col.metric("Loss with every head", f"{before.mean_loss:.3f}")
                off_col.metric("Loss with heads switched off", f"{after.mean_loss:.3f}",
                               delta=f"{after.mean_loss - before.mean_loss:+.3f}" if off else None, delta_color="inverse")
                count_col.metric("Heads switched off", f"{len(off)} of {total}")
                chart(loss_change_figure(before, after, list(run.labels)), "att_abl_losses", f"{name}-ablation-loss")
            else:
                st.info("The loss needs at least two tokens: type a longer text.")
            chart(next_token_figure(before, after, lambda i: label_of(checkpoint.tokenizer, i),
                                    f"What comes after “{run.labels[-1]}”: the likeliest next tokens"),
                  "att_abl_next", f"{name}-ablation-next-token")


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
        with figure_col:
            chart(figure, f"att_step_{number}", f"layer{layer}-head{head}-query{query}-step{number + 1}")
    st.markdown(
        f"**Query #{query}, key by key:** score = q·k / √{d}, weight = e^(score − max) / Σ e^(score − max)"
    )
    with control("att_step_table", advanced=True):
        st.dataframe(pd.DataFrame(rows), hide_index=True, row_height=ROW, height=min(460, ROW * (len(rows) + 1) + 3),
                     column_config={c: st.column_config.NumberColumn(format="%.4f") for c in rows[0] if c != "key"})
    mix = value_mix(run, layer, head, query)
    st.markdown(
        f"#### 4 · Mixing the values\n"
        f"The output for query #{query} is the sum of every value vector times its weight: "
        f"{len(mix.labels)} rows below add up to the last one. This is what the head passes on."
    )
    chart(value_mix_figure(mix), "att_mix", f"layer{layer}-head{head}-query{query}-value-mix")
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
                with chart_col:
                    chart(parameter_figure(config), f"att_params_{name}", f"{name}-parameters")
                config_col.table(pd.DataFrame(config_rows(config)).set_index("setting"))
                st.markdown("**The model, top to bottom**")
                st.html(block_diagram_html(config))
                if checkpoint.training:
                    with st.expander("How it was trained"):
                        st.json(checkpoint.training)
