"""Tokenizer: how text becomes token ids, and how a byte-pair encoder learns its vocabulary."""

import time

import pandas as pd
import streamlit as st

from explorer.charts import compression_figure
from explorer.paths import tokenizers_dir
from explorer.presenter import control
from explorer.token_view import chips_html, describe_tokens, text_stats, token_label, vocabulary_rows
from explorer.tokenizers import TIKTOKEN_CHOICES, load_saved, load_tiktoken, save_tokenizer, saved_tokenizers
from explorer.url_state import BIND, bind_text
from explorer.widgets import chart, corpus_input
from lm.tokenizer import SPLIT_PATTERN_LABELS, SPLIT_PATTERNS, BPETokenizer, TokenizerError

DEFAULT_TEXT = (
    "Hello world! A tokenizer cuts text into tokens, and a model only ever sees their ids.\n"
    "Numbers: 2026, 3.14159 and 1234567.   Code: for i in range(10): print(i)\n"
    "Emoji 🦙🎉 and other scripts: 日本語, Ελληνικά, русский, हिन्दी."
)
MAX_CHARS = 200_000
JUST_TRAINED = "Own BPE (just trained)"

st.title("🔤 Tokenizer")
st.write("A language model reads numbers, not letters. A tokenizer turns text into a list of token ids and back.")
tokenize_tab, train_tab = st.tabs(["Tokenize text", "Train your own BPE"], key="tok_tab", bind=BIND)


def tokenizer_choices() -> dict:
    """Label -> a function that loads it (lazily: a missing GPT-4 file only matters if chosen)."""
    choices = {label: (lambda name=name: load_tiktoken(name)) for label, name in TIKTOKEN_CHOICES.items()}
    if "bpe" in st.session_state:
        choices[JUST_TRAINED] = lambda: st.session_state["bpe"]["tokenizer"]
    for name, path in saved_tokenizers().items():
        choices[f"Saved: {name}"] = lambda path=path: load_saved(path)
    return choices


def show_tokens(label: str, tokenizer, text: str, show_ids: bool) -> dict:
    ids = tokenizer.encode(text)
    stats = text_stats(text, ids)
    st.markdown(f"**{label}** · {stats.tokens:,} tokens · {stats.chars_per_token:.2f} characters per token")
    st.html(chips_html(describe_tokens(tokenizer, ids), show_ids=show_ids))
    return {"tokenizer": label, "vocabulary": tokenizer.vocab_size, "tokens": stats.tokens, "characters per token": round(stats.chars_per_token, 2)}


with tokenize_tab:
    text = st.text_area("Text to tokenize", DEFAULT_TEXT, height=140, max_chars=MAX_CHARS, key="tok_text",
                        bind=bind_text("tok_text", "the text to tokenize"))
    choices = tokenizer_choices()
    if "tok_chosen" in st.session_state:  # keep what is still offered, and add a tokenizer just trained
        previous = st.session_state["tok_chosen"] + ([JUST_TRAINED] if st.session_state.pop("bpe_new", False) else [])
        still = list(dict.fromkeys(c for c in previous if c in choices))
        if still != st.session_state["tok_chosen"]:
            st.session_state["tok_chosen"] = still
    with control("tok_chosen"):
        chosen = st.multiselect(
            "Tokenizers to compare", list(choices), default=[c for c in choices if c.startswith(("GPT-2", "GPT-4 ("))],
            key="tok_chosen", bind=BIND,
        )
    with control("tok_show_ids"):
        show_ids = st.toggle("Show token ids under the tokens", key="tok_show_ids", bind=BIND)
    st.caption("Hover a token for its id and bytes. · is a space, ↵ a line break; a dashed red box is part of a character (its raw bytes).")
    if not text:
        st.info("Type or paste some text above to see its tokens.")
    else:
        chars, nbytes = st.columns(2)
        chars.metric("Characters", f"{len(text):,}")
        nbytes.metric("Bytes (UTF-8)", f"{len(text.encode('utf-8')):,}")
        rows = []
        for start in range(0, len(chosen), 2):
            for column, label in zip(st.columns(2), chosen[start : start + 2]):
                with column:
                    try:
                        rows.append(show_tokens(label, choices[label](), text, show_ids))
                    except TokenizerError as exc:
                        st.warning(f"{label} is not available: {exc}")
        if len(rows) > 1:
            st.dataframe(pd.DataFrame(rows), hide_index=True)


def train_controls():
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
        corpus_text, corpus_label = corpus
        bar = st.progress(0.0, "Counting pairs…")
        started = time.perf_counter()
        try:
            tokenizer = BPETokenizer.train(
                corpus_text, int(vocab_size), pattern,
                progress=lambda done, total: bar.progress(done / total, f"Merge {done:,} of {total:,}"),
            )
        except TokenizerError as exc:
            st.error(str(exc))
            return
        finally:
            bar.empty()
        st.session_state["bpe"] = {
            "tokenizer": tokenizer,
            "corpus": corpus_label,
            "total_bytes": len(corpus_text.encode("utf-8")),
            "seconds": time.perf_counter() - started,
            "requested": int(vocab_size),
        }
        st.session_state["bpe_new"] = True
        st.rerun()  # so the Tokenize tab, drawn above, compares it at once


def show_trained(trained: dict) -> None:
    tokenizer: BPETokenizer = trained["tokenizer"]
    merges = tokenizer.merges
    st.success(
        f"Learned {len(merges):,} merges from {trained['corpus']} ({trained['total_bytes'] / 1e6:.2f} MB) "
        f"in {trained['seconds']:.1f} s: a vocabulary of {tokenizer.vocab_size:,} "
        f"(256 bytes + {len(merges):,} merges + {len(tokenizer.special_tokens)} special)."
    )
    if tokenizer.vocab_size < trained["requested"]:
        st.warning(
            f"The text ran out of pairs to merge before reaching {trained['requested']:,} tokens: "
            "every chunk is already a single token. Use a longer text for a larger vocabulary."
        )
    if not merges:
        return

    st.subheader("Replay the merges")
    step = st.slider("Merge step", 1, len(merges), min(10, len(merges)), key="bpe_step")
    merge = merges[step - 1]
    left, right = (token_label(tokenizer.vocab[t]) for t in merge.pair)
    st.markdown(
        f"#### Merge {step:,}: `{left}` + `{right}` → `{token_label(tokenizer.vocab[merge.id])}` "
        f"(id {merge.id}), seen {merge.count:,} times"
    )
    sample = st.session_state.get("tok_text") or DEFAULT_TEXT
    partial = BPETokenizer(merges[:step], tokenizer.pattern, tokenizer.special_tokens)
    sample_ids = partial.encode(sample)
    st.caption(f"The text from the first tab with only the first {step:,} merges: {len(sample_ids):,} tokens; the newest token is red.")
    st.html(chips_html(describe_tokens(partial, sample_ids), highlight=frozenset({merge.id})))
    chart(compression_figure([m.count for m in merges], trained["total_bytes"], at_merge=step), "bpe_compression",
          f"bpe-{tokenizer.vocab_size}-compression")

    st.subheader("Vocabulary")
    query = st.text_input("Search tokens", placeholder="for example: the", key="bpe_search")
    vocab = pd.DataFrame(vocabulary_rows(tokenizer)).astype({"count": "Int64"})
    if query:
        vocab = vocab[vocab["token"].str.contains(query.replace(" ", "·"), regex=False)]
    st.dataframe(vocab, hide_index=True, height=320, width="stretch")

    st.subheader("Save it")
    name = st.text_input("Name", value=f"bpe-{tokenizer.vocab_size}", key="bpe_name")
    if st.button("Save tokenizer"):
        try:
            path = save_tokenizer(tokenizer, name)
        except (ValueError, OSError) as exc:
            st.error(f"Not saved: {exc}")
        else:
            st.session_state["bpe_saved"] = f"Saved as {path}. It is offered on this page and for training models."
            st.rerun()  # so the Tokenize tab, drawn above, offers it
    if "bpe_saved" in st.session_state:
        st.success(st.session_state.pop("bpe_saved"))
    st.caption(f"Saved tokenizers live in `{tokenizers_dir()}/`.")


with train_tab:
    st.write(
        "Byte-pair encoding starts from the 256 byte values and repeatedly joins the most frequent "
        "neighbouring pair into a new token."
    )
    train_controls()
    if "bpe" in st.session_state:
        show_trained(st.session_state["bpe"])
