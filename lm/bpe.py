"""BPE training, twice: a fast trainer and a short reference that reads like the textbook.

Both learn from the chunks the tokenizer's regex cut the text into (no merge crosses
a chunk edge). Every chunk starts as its UTF-8 bytes (ids 0..255); the most frequent
adjacent pair becomes a new token, until there are enough merges or no pairs left.
Ties go to the smallest (left id, right id), so training is deterministic. When the
best pair's bytes already form a token (two different splits of the same string), its
occurrences are joined into that token and no merge is added.

`train_merges` is what the tokenizer uses; `train_merges_reference` recounts every
pair from scratch at each step, computes the same merges independently, and is the
oracle the tests hold the fast one to.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable


@dataclass(frozen=True)
class Merge:
    """One training step: `pair` was joined into token `id`; it occurred `count` times."""

    pair: tuple[int, int]
    id: int
    count: int


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair`, left to right, by `new_id`."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_merges(
    chunk_counts: dict[bytes, int],
    num_merges: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[Merge]:
    """Learn up to `num_merges` merges from chunks and how often each occurs.

    Pairs are counted once over the unique chunks; after a merge only the chunks
    that contained the pair are recounted, and a heap (with stale entries skipped)
    finds the next most frequent pair.
    """
    words = [list(chunk) for chunk in chunk_counts]
    freqs = list(chunk_counts.values())
    counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for i, word in enumerate(words):
        for pair in zip(word, word[1:]):
            counts[pair] += freqs[i]
            where[pair].add(i)
    heap = [(-count, pair) for pair, count in counts.items()]
    heapq.heapify(heap)

    vocab = [bytes([b]) for b in range(256)]
    id_of = {token: i for i, token in enumerate(vocab)}
    merges: list[Merge] = []
    while len(merges) < num_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        if counts.get(pair) != -neg_count:
            continue  # stale: the count changed after this entry was pushed
        joined = vocab[pair[0]] + vocab[pair[1]]
        new_id = id_of.get(joined)
        if new_id is None:
            new_id = id_of[joined] = len(vocab)
            vocab.append(joined)
            merges.append(Merge(pair, new_id, -neg_count))
            if progress and (len(merges) % 16 == 0 or len(merges) == num_merges):
                progress(len(merges), num_merges)
        changed = set()
        for i in where.pop(pair):
            word, freq = words[i], freqs[i]
            for old in zip(word, word[1:]):
                counts[old] -= freq
                changed.add(old)
            word = words[i] = merge_pair(word, pair, new_id)
            for new in zip(word, word[1:]):
                counts[new] += freq
                where[new].add(i)
                changed.add(new)
        for p in changed:
            if counts[p] > 0:
                heapq.heappush(heap, (-counts[p], p))
            else:
                del counts[p]
                where.pop(p, None)
    return merges


def train_merges_reference(chunks: Iterable[str], num_merges: int) -> list[Merge]:
    """The same merges as `train_merges` on the same chunks (every occurrence listed,
    not counted), the slow way: count every pair, merge the most frequent, repeat."""
    words = [list(chunk.encode("utf-8")) for chunk in chunks]
    vocab = [bytes([b]) for b in range(256)]
    merges: list[Merge] = []
    while len(merges) < num_merges:
        counts = Counter(pair for word in words for pair in zip(word, word[1:]))
        if not counts:
            break
        pair, count = min(counts.items(), key=lambda item: (-item[1], item[0]))
        joined = vocab[pair[0]] + vocab[pair[1]]
        if joined not in vocab:
            vocab.append(joined)
            merges.append(Merge(pair, len(vocab) - 1, count))
        words = [_join_pair(word, pair, vocab.index(joined)) for word in words]
    return merges


def _join_pair(word: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Left to right, a token that completes `pair` with the one before it joins it
    (`new_id` is never `pair[0]`, so a joined token is never joined again)."""
    out: list[int] = []
    for token in word:
        if out and out[-1] == pair[0] and token == pair[1]:
            out[-1] = new_id
        else:
            out.append(token)
    return out
