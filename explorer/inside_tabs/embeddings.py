"""The "Embeddings" tab: every token's vector on a map, a search, and a token's nearest neighbours."""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import streamlit as st

from explorer.checkpoint_cache import cached_on_checkpoint
from explorer.generation_view import label_of
from explorer.inside_charts import embedding_figure
from explorer.inside_tabs.view import InsideView
from explorer.url_state import BIND
from explorer.widgets import chart, table
from lm.checkpoint import Checkpoint
from lm.embedding_map import EmbeddingMap, embedding_map, nearest_tokens

MAX_POINTS = 4_000  # drawn as the grey cloud (the first ids: in a BPE, the earliest merges, the commonest)
MATCHES = 30
NEIGHBOURS = 10


@cached_on_checkpoint(max_entries=4, spinner="Projecting every token's embedding…")
def projection(checkpoint: Checkpoint, n_tokens: int) -> EmbeddingMap:
    return embedding_map(checkpoint.model, n_tokens)


@cached_on_checkpoint(max_entries=4)
def vocabulary(checkpoint: Checkpoint, n_tokens: int) -> tuple[str, ...]:
    """Every token's label, for the search."""
    return [label_of(checkpoint.tokenizer, i) for i in range(n_tokens)]


@cached_on_checkpoint(max_entries=64)
def neighbours(checkpoint: Checkpoint, token: int, n_tokens: int) -> tuple[tuple[int, float], ...]:
    """Cached: each call normalizes the whole embedding (about 0.1 s for GPT-2's)."""
    return nearest_tokens(checkpoint.model, token, n_tokens, NEIGHBOURS)


def search(labels: Sequence[str], query: str) -> list[int]:
    """Tokens whose text is the query, then those starting with it, then those containing it (case aside)."""
    q = query.strip().lower().replace(" ", "·")
    ranked = sorted((i for i, label in enumerate(labels) if q in label.lower()),
                    key=lambda i: (labels[i].lower().lstrip("·") != q.lstrip("·"), not labels[i].lower().startswith(q),
                                   len(labels[i]), i))
    return ranked[:MATCHES]


def render_embeddings(view: InsideView) -> None:
    labels = vocabulary(view.checkpoint, view.n_tokens)
    found = projection(view.checkpoint, view.n_tokens)
    if labels is None or found is None:
        return
    with view.side():
        query = st.text_input("Find a token", view.labels[-1].strip("·") or view.labels[-1], key="ins_search",
                              bind=BIND, help="Part of a token's text; · stands for a space.")
        matches = search(labels, query) if query.strip() else []
        if not matches:
            st.info(f"No token contains “{query}”.")
        chosen = st.selectbox("Token", matches, key="ins_token", format_func=lambda i: f"{labels[i]}  (id {i})",
                              disabled=not matches)
    near = (neighbours(view.checkpoint, chosen, view.n_tokens) or ()) if chosen is not None else ()
    shown = list(range(min(MAX_POINTS, view.n_tokens)))
    title = f"{view.name}: {len(shown):,} of {view.n_tokens:,} token embeddings" if len(shown) < view.n_tokens else \
        f"{view.name}: all {view.n_tokens:,} token embeddings"
    chart(embedding_figure(found, shown, labels.__getitem__, chosen, [i for i, _ in near], title),
          "ins_embeddings", f"{view.name}-embeddings")
    if near:
        st.markdown(f"**Nearest neighbours of {labels[chosen]}** (cosine similarity of the embeddings):")
        table(pd.DataFrame({"token": [labels[i] for i, _ in near], "id": [i for i, _ in near],
                            "cosine": [round(c, 3) for _, c in near]}), 420)
    st.caption(
        "Every token's embedding has as many numbers as the model is wide; the map keeps the two directions "
        "along which the embeddings differ most (PCA), so it shows only part of the picture. Nearest "
        "neighbours are measured in the full space: tokens the model uses alike get similar vectors."
        + (" With this many tokens the two directions are found by randomized PCA (subspace iteration from a "
           "fixed random start, as torch.pca_lowrank does): close to the exact ones whenever they stand out."
           if found.randomized else "")
    )
