"""The Tokenizer page's "Train your own BPE" tab: train a byte-pair encoder on a corpus, replay
its merges one by one on a sample text, search its vocabulary, and save it.

The trained tokenizer stays in the session (`trained_bpe`), so the Tokenize tab can compare it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from explorer.charts import compression_figure
from explorer.paths import tokenizers_dir
from explorer.plain_text import plain
from explorer.token_view import chips_html, describe_tokens, token_label, vocabulary_rows
from explorer.tokenizers import save_tokenizer
from explorer.url_state import BIND
from explorer.widgets import chart, corpus_input
from lm.tokenizer import SPLIT_PATTERN_LABELS, SPLIT_PATTERNS, BPETokenizer, TokenizerError

TRAINED, NEW, SAVED = "bpe", "bpe_new", "bpe_saved"  # session keys


@dataclass(frozen=True)
class TrainedBPE:
    tokenizer: BPETokenizer
    corpus: str  # what it was trained on, in words
    total_bytes: int  # of the corpus, UTF-8
    seconds: float
    requested: int  # the vocabulary size asked for; a short text can give fewer


def trained_bpe() -> TrainedBPE | None:
    return st.session_state.get(TRAINED)


def take_new() -> bool:
    """Whether a tokenizer was trained since the last call: the Tokenize tab then adds it to its comparison."""
    return st.session_state.pop(NEW, False)


def train_controls() -> None:
    """Corpus, vocabulary size and pre-split; the button trains, keeps the result in the
    session and reruns the page, so the Tokenize tab, drawn above, compares it at once."""
    corpus = corpus_input("bpe")
    vocab_col, pattern_col = st.columns(2)
    vocab_size = vocab_col.number_input(
        "Vocabulary size", min_value=257, max_value=16_384, value=512, step=64, key="bpe_vocab", bind=BIND,
        help="256 byte tokens + the merges to learn + 1 special token (<|endoftext|>).",
    )
    pattern = pattern_col.selectbox(
        "Pre-split", list(SPLIT_PATTERNS), format_func=SPLIT_PATTERN_LABELS.get, key="bpe_pattern", bind=BIND,
        help="A regex cuts the text into chunks first; merges never cross a chunk edge.",
    )
    if st.button("Train tokenizer", type="primary", disabled=corpus is None):
        trained = train(*corpus, int(vocab_size), pattern)
        if trained is not None:
            st.session_state[TRAINED] = trained
            st.session_state[NEW] = True
            st.rerun()


def train(text: str, label: str, vocab_size: int, pattern: str) -> TrainedBPE | None:
    """Train with a progress bar; None, with the reason shown, when the text cannot be trained on."""
    bar = st.progress(0.0, "Counting pairs…")
    started = time.perf_counter()
    try:
        tokenizer = BPETokenizer.train(
            text, vocab_size, pattern,
            progress=lambda done, total: bar.progress(done / total, f"Merge {done:,} of {total:,}"),
        )
    except TokenizerError as exc:
        st.error(plain(exc))
        return None
    finally:
        bar.empty()
    return TrainedBPE(tokenizer, label, len(text.encode("utf-8")), time.perf_counter() - started, vocab_size)


def show_trained(trained: TrainedBPE, sample: str) -> None:
    """What was learned, then its merges replayed on `sample`, its vocabulary, and saving it."""
    tokenizer = trained.tokenizer
    merges = tokenizer.merges
    st.success(
        f"Learned {len(merges):,} merges from {trained.corpus} ({trained.total_bytes / 1e6:.2f} MB) "
        f"in {trained.seconds:.1f} s: a vocabulary of {tokenizer.vocab_size:,} "
        f"(256 bytes + {len(merges):,} merges + {len(tokenizer.special_tokens)} special)."
    )
    if tokenizer.vocab_size < trained.requested:
        st.warning(
            f"The text ran out of pairs to merge before reaching {trained.requested:,} tokens: "
            "every chunk is already a single token. Use a longer text for a larger vocabulary."
        )
    if not merges:
        return
    replay_merges(tokenizer, trained.total_bytes, sample)
    vocabulary_table(tokenizer)
    save_form(tokenizer)


def replay_merges(tokenizer: BPETokenizer, total_bytes: int, sample: str) -> None:
    """A slider over the merges: the chosen one, the sample encoded with the merges up to it, and
    the compression they reach on the training text."""
    merges = tokenizer.merges
    st.subheader("Replay the merges")
    step = st.slider("Merge step", 1, len(merges), min(10, len(merges)), key="bpe_step")
    merge = merges[step - 1]
    left, right = (token_label(tokenizer.vocab[t]) for t in merge.pair)
    st.markdown(
        f"#### Merge {step:,}: `{left}` + `{right}` → `{token_label(tokenizer.vocab[merge.id])}` "
        f"(id {merge.id}), seen {merge.count:,} times"
    )
    partial = BPETokenizer(merges[:step], tokenizer.pattern, tokenizer.special_tokens)
    sample_ids = partial.encode(sample)
    st.caption(f"The text from the first tab with only the first {step:,} merges: {len(sample_ids):,} tokens; the newest token is red.")
    st.html(chips_html(describe_tokens(partial, sample_ids), highlight=frozenset({merge.id})))
    chart(compression_figure([m.count for m in merges], total_bytes, at_merge=step), "bpe_compression",
          f"bpe-{tokenizer.vocab_size}-compression")


def vocabulary_table(tokenizer: BPETokenizer) -> None:
    st.subheader("Vocabulary")
    query = st.text_input("Search tokens", placeholder="for example: the", key="bpe_search")
    vocab = pd.DataFrame(vocabulary_rows(tokenizer)).astype({"count": "Int64"})
    if query:
        vocab = vocab[vocab["token"].str.contains(query.replace(" ", "·"), regex=False)]
    st.dataframe(vocab, hide_index=True, height=320, width="stretch")


def save_form(tokenizer: BPETokenizer) -> None:
    """A name and a button; a saved tokenizer is offered on this page and for training models."""
    st.subheader("Save it")
    name = st.text_input("Name", value=f"bpe-{tokenizer.vocab_size}", key="bpe_name")
    if st.button("Save tokenizer"):
        try:
            path = save_tokenizer(tokenizer, name)
        except (ValueError, OSError) as exc:
            st.error(f"Not saved: {plain(exc)}")
        else:
            st.session_state[SAVED] = f"Saved as {path}. It is offered on this page and for training models."
            st.rerun()  # so the Tokenize tab, drawn above, offers it
    if SAVED in st.session_state:
        st.success(st.session_state.pop(SAVED))
    st.caption(f"Saved tokenizers live in `{tokenizers_dir()}/`.")
