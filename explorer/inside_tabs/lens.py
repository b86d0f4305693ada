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
    chart(lens_figure(found, view.labels, view.label_of, f"{view.name}: the guess after each layer", marked),
          "ins_lens", f"{view.name}-logit-lens")
    last = len(view.ids) - 1
    settled = found.rows[found.settles_at()[last]]
    answer = view.label_of(int(found.final_ids[last]))
    st.markdown(f"After the last token the model says **{plain(answer)}**; that guess is on top from "
                f"**{settled}** on.")
    if marked is not None:
        layer, head, score = induction
        st.markdown(f"The outlined row is the block of the strongest induction head, layer {layer} head {head} "
                    f"(score {score:.2f} on the induction probe), the head that looks where the answer was "
                    "before. Compare: from which block on can the answer be read? A head moves the letter; "
                    "the blocks after it may still have to make it readable.")
    st.caption(
        "Each row stops the model after one block: the residual stream at that point goes through the final "
        "LayerNorm and the output head as if no block came after. A cell's colour is the probability that "
        "early reading gives to the model's final guess at that position; its text (on short texts) is the "
        "early reading's own top guess; hover for its top five. The last row is the model's real output."
        + (" For a vocabulary this large the earlier rows go through the head in bf16 (about 4× faster on this "
           "CPU); each cell's 32 likeliest tokens are then recomputed in fp32, so the guesses are fp32's and "
           "the probabilities within about 1% of them. The last row is fp32 throughout." if found.fast else "")
    )
