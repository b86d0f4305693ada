"""The "Activation patching" tab: copy activations from the clean prompt into the corrupted
one, and see which of them bring the clean answer back."""

from __future__ import annotations

from typing import Mapping

import pandas as pd
import streamlit as st

from explorer.checkpoint_cache import cached_on_checkpoint
from explorer.head_statistics import top_heads
from explorer.inside_charts import head_patching_figure, residual_patching_figure
from explorer.inside_tabs.inputs import MAX_CHARS, MAX_TOKENS
from explorer.inside_tabs.view import InsideView
from explorer.plain_text import plain
from explorer.token_view import token_label
from explorer.url_state import BIND, bind_text
from explorer.widgets import chart, table
from lm.attribution_patching import CHECKED, check_strongest, choose_patching
from lm.checkpoint import Checkpoint
from lm.patching import Patching, PatchingError, check_lengths
from lm.trace import UnsupportedArchitecture

TOP = 3  # the strongest heads linked
PICKABLE = 40  # residual cells offered to check, the strongest estimates first (every head is offered)

Cell = tuple[str, int, int]  # ("residual", layer, position) or ("head", layer, head)


@cached_on_checkpoint(max_entries=16, spinner="Patching every layer, position and head…")
def patching(checkpoint: Checkpoint, clean: tuple[int, ...], corrupted: tuple[int, ...], n_tokens: int,
             answers: tuple[int | None, int | None]) -> Patching:
    return choose_patching(checkpoint.model, list(clean), list(corrupted), n_tokens, answers)


@cached_on_checkpoint(max_entries=32, spinner="Patching the strongest cells exactly, one patched run each…")
def checked(checkpoint: Checkpoint, clean: tuple[int, ...], corrupted: tuple[int, ...], n_tokens: int,
            answers: tuple[int | None, int | None], cells: tuple[Cell, ...]) -> Mapping[Cell, float]:
    residual = [(layer, where) for kind, layer, where in cells if kind == "residual"]
    heads = [(layer, where) for kind, layer, where in cells if kind == "head"]
    found = check_strongest(checkpoint.model, list(clean), list(corrupted), n_tokens, answers, residual, heads)
    return dict(zip([c for c in cells if c[0] == "residual"] + [c for c in cells if c[0] == "head"],
                    [float(v) for v in (*found[0], *found[1])]))


def answer_id(view: InsideView, text: str, which: str) -> int | None:
    """The one token an answer box names; None when empty (the model's own guess). PatchingError otherwise."""
    if not text:
        return None
    ids = view.checkpoint.tokenizer.encode(text)
    if len(ids) != 1:
        raise PatchingError(f"the {which} answer “{text}” is {len(ids)} tokens; name a single token "
                            "(mind the leading space: GPT-2 writes “ Mary”, not “Mary”)")
    return ids[0]


def prompts(view: InsideView) -> tuple[tuple[int, ...], tuple[int | None, int | None]]:
    """The corrupted prompt's ids and the two answers, from this tab's boxes."""
    corrupted = st.text_area("Corrupted prompt: the same text with one place changed", view.example.corrupted,
                             height=80, max_chars=MAX_CHARS, key="ins_corrupt",
                             bind=bind_text("ins_corrupt", "the corrupted prompt"))
    clean_col, corrupted_col = st.columns(2)
    clean_answer = clean_col.text_input("Clean answer (empty: the model's own guess)", view.example.clean_answer,
                                        key="ins_clean_answer", bind=BIND)
    corrupted_answer = corrupted_col.text_input("Corrupted answer (empty: the model's own guess)",
                                                view.example.corrupted_answer, key="ins_corrupt_answer", bind=BIND)
    answers = (answer_id(view, clean_answer, "clean"), answer_id(view, corrupted_answer, "corrupted"))
    ids = view.checkpoint.tokenizer.encode(corrupted)
    check_lengths(view.length, len(ids))  # before both keep their last tokens, which would line up other words
    ids = ids[-min(MAX_TOKENS, view.checkpoint.model.config.block_size):]
    return tuple(ids), answers


def render_patching(view: InsideView) -> None:
    try:
        with view.side():
            corrupted, answers = prompts(view)
        found = patching(view.checkpoint, view.ids, corrupted, view.n_tokens, answers)
    except (PatchingError, UnsupportedArchitecture) as exc:
        st.info(plain(f"{exc}."))
        return
    if found is None:
        return
    clean_word, corrupted_word = view.label_of(found.clean_answer), view.label_of(found.corrupted_answer)
    clean_col, corrupted_col = st.columns(2)
    clean_col.metric(f"Clean run: logit({clean_word}) − logit({corrupted_word})", f"{found.clean_difference:+.2f}")
    corrupted_col.metric("Corrupted run: the same difference", f"{found.corrupted_difference:+.2f}")
    def changed(t: int) -> str:  # a changed token shows both: b→x
        return f"{view.labels[t]}→{token_label(view.checkpoint.tokenizer.token_bytes(corrupted[t]))}"

    labels = tuple(changed(t) if t in found.differ else label for t, label in enumerate(view.labels))
    how = "exact" if found.exact else "estimates"
    if not found.exact:
        st.info("**Estimates** (attribution patching): patching every cell of this model would take a patched run "
                "per cell, too long to wait for, so both grids come from one backward pass instead: (clean − "
                "corrupted activation) × the gradient of the logit difference. Often far off at the changed token "
                "in the first layers; the strongest cells are patched exactly below the grids.")
    chart(residual_patching_figure(found, labels, f"Patching the residual stream at one layer and position ({how})"),
          "ins_patch_resid", f"{view.name}-patching-residual")
    chart(head_patching_figure(found, f"Patching one head's output at every position ({how})"),
          "ins_patch_heads", f"{view.name}-patching-heads")
    heads = top_heads(found.heads, TOP) if found.exact else check_exactly(view, corrupted, answers, found, labels)
    if heads is None:
        return
    link_heads(view, heads)
    st.caption(
        f"The corrupted prompt is run again with one activation copied from the clean run. 1 (blue) means "
        f"the clean answer's lead over the other, logit({clean_word}) − logit({corrupted_word}) at the last "
        "position, is fully back: that activation carries the information; 0 (white): it changes nothing; red: "
        "it pushes the other way. Before the changed position the two runs are identical, so patching there "
        "changes nothing. The head grid patches a head's output at every position at once."
        + (" This model has sandwich norms: a layer's heads are normalised together before they are added, so a "
           "patched head also changes how its neighbours are scaled; the patched runs go through that norm as the "
           "model does." if view.checkpoint.model.config.norm_position == "sandwich" else "")
    )


def check_exactly(view: InsideView, corrupted: tuple[int, ...], answers: tuple[int | None, int | None],
                  found: Patching, labels: tuple[str, ...]) -> list[tuple[int, int, float]] | None:
    """The strongest estimated cells, and any the student picks, patched exactly: a table of
    estimate against exact. Returns the heads checked, (layer, head, exact share), most restoring first."""
    residual, heads = found.strongest(CHECKED)
    strongest = [("residual", *cell) for cell in residual] + [("head", *cell) for cell in heads]

    def name(cell: Cell) -> str:
        kind, layer, where = cell
        return f"residual into block {layer} at #{where} {labels[where]}" if kind == "residual" else \
            f"L{layer} H{where}"

    ranked_residual, _ = found.strongest(PICKABLE)
    offered = [c for c in [("residual", *cell) for cell in ranked_residual] +
               [("head", layer, h) for layer in range(found.heads.shape[0]) for h in range(found.heads.shape[1])]
               if c not in strongest]
    with view.side():
        picked = st.multiselect("Check more cells exactly", offered, key="ins_check", format_func=name,
                                help="Each one costs a patched run of the corrupted prompt.")
    cells = tuple(strongest + [c for c in picked if c in offered])
    exact = checked(view.checkpoint, view.ids, corrupted, view.n_tokens, answers, cells)
    if exact is None:
        return None
    grid = {"residual": found.residual, "head": found.heads}
    table(pd.DataFrame({"cell (patched exactly)": [name(c) for c in cells],
                        "estimate": [f"{float(grid[c[0]][c[1], c[2]]):+.2f}" for c in cells],
                        "exact": [f"{exact[c]:+.2f}" for c in cells]}), 420)
    return sorted([(layer, where, value) for (kind, layer, where), value in exact.items() if kind == "head"],
                  key=lambda found_head: -found_head[2])


def link_heads(view: InsideView, heads: list[tuple[int, int, float]]) -> None:
    """Links to the Attention page for the heads that bring the most back (exact shares)."""
    for column, (layer, head, share) in zip(st.columns(TOP), heads[:TOP]):
        view.link_head(column, layer, head, f"L{layer} H{head}: {share:.0%} back",
                       "Open this head's map of the clean prompt on the Attention page")
