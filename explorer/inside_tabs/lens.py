"""The "Logit lens" tab: the model stopped after each layer, and what it would have said."""

from __future__ import annotations

import streamlit as st

from explorer.checkpoint_cache import cached_on_checkpoint
from explorer.head_statistics import top_heads
from explorer.inside_charts import lens_figure
from explorer.inside_tabs.view import InsideView
from explorer.plain_text import plain
from explorer.widgets import chart
from lm.checkpoint import Checkpoint
from lm.detectors import head_scores
from lm.lens import LogitLens, logit_lens
from lm.tasks import probe_vocabulary
from lm.trace import UnsupportedArchitecture

INDUCTION = 0.3  # an induction score from which a head's block is outlined


@cached_on_checkpoint(max_entries=16, spinner="Reading every layer…")
def lens(checkpoint: Checkpoint, ids: tuple[int, ...], n_tokens: int) -> LogitLens:
    return logit_lens(checkpoint.model, list(ids), n_tokens)


@cached_on_checkpoint(max_entries=8, spinner="Looking for an induction head…")
def induction_head(checkpoint: Checkpoint) -> tuple[int, int, float]:
    """The head scoring highest on the induction probe: the head that looks where a copy of the
    answer is (in the first layer it can only find it by position)."""
    model = checkpoint.model
    vocabulary = probe_vocabulary(checkpoint.training, checkpoint.tokenizer, model.config.block_size)
    return top_heads(head_scores(model, [0], vocabulary=vocabulary)["induction"].numpy(), 1)[0]


def render_lens(view: InsideView) -> None:
    try:
        found = lens(view.checkpoint, view.ids, view.n_tokens)
    except UnsupportedArchitecture as exc:
        st.info(plain(f"{view.name}: {exc}."))
        return
    if found is None:
        return
    induction = induction_head(view.checkpoint)
    marked = induction[0] + 1 if induction is not None and induction[2] >= INDUCTION else None  # row 0: embeddings
    tag = f"induction head L{induction[0]} H{induction[1]}" if marked is not None else ""
    chart(lens_figure(found, view.labels, view.label_of, f"{view.name}: the guess after each layer", marked, tag),
          "ins_lens", f"{view.name}-logit-lens")
    last = len(view.ids) - 1
    settles = int(found.settles_at()[last])
    answer = view.label_of(int(found.final_ids[last]))
    st.markdown(f"After the last token the model says **{plain(answer)}**; that guess is on top from "
                f"**{found.rows[settles]}** on.")
    if marked is not None:
        st.markdown(induction_note(induction, marked, settles, found.rows))
    post = view.checkpoint.model.config.norm_position == "post"
    st.caption(
        "Each row stops the model after one block: the residual stream at that point goes through the "
        + ("output head as it is (this model is post-norm: each block ends with a norm, and there is no final "
           "one)" if post else "final norm and the output head")
        + " as if no block came after. A cell's colour is the probability that "
        "early reading gives to the model's final guess at that position; its text (on short texts) is the "
        "early reading's own top guess; hover for its top five. The last row is the model's real output."
        + (" For a vocabulary this large the earlier rows go through the head in bf16 (about 4× faster on this "
           "CPU); each cell's 32 likeliest tokens are then recomputed in fp32, so the guesses are fp32's and "
           "the probabilities within about 1% of them. The last row is fp32 throughout." if found.fast else "")
    )


def induction_note(induction: tuple[int, int, float], marked: int, settles: int, rows: tuple[str, ...]) -> str:
    """Where the strongest induction head sits (the outlined row) against where the last guess settles."""
    layer, head, score = induction
    note = (f"The outlined row is **{rows[marked]}**, the block of the strongest induction head, layer {layer} "
            f"head {head} (score {score:.2f} on the induction probe): the head that looks where the answer was "
            "before. ")
    if settles == marked:
        return note + "The answer becomes readable right there: that head moves it, and the lens reads it at once."
    if settles > marked:
        return note + (f"The answer becomes readable {settles - marked} block(s) later, after **{rows[settles]}**: "
                       "the head moves the letter, and the blocks after it still make it readable.")
    return note + (f"The answer is readable already after **{rows[settles]}**, before that block: something "
                   "earlier predicts it here, and the head need not be what decides it (patching tells).")
