"""Benchmark of the project's byte-level BPE (lm.tokenizer) on all of Tiny Shakespeare.

Prints figures, checks nothing but two speed goals (it is not a test):
  1. training a 1,024-token vocabulary (GPT-4 split pattern): seconds, best of
     --repeats, goal <= 5 s; beside it the Rust Hugging Face `tokenizers` BPE
     trainer set up the same way (same regex pre-split, byte-level, same vocab);
  2. encoding the whole text single-threaded with `encode` (tiktoken's Rust on our
     ranks): MB/s (10^6 bytes of UTF-8 per second), goal >= 4 MB/s; beside it
     tiktoken's GPT-2 encoding (r50k_base, `encode_ordinary`);
  3. the pure-Python `encode_reference` on the first 100 kB, and whether its ids
     equal `encode`'s there;
  4. the reference trainer (lm.bpe.train_merges_reference) on the first 5 kB, once,
     and whether its merges equal the fast trainer's there;
  5. token counts and bytes per token, ours against GPT-2 (and the HF model).

Run from the repository root:  .venv/bin/python benchmarks/bpe.py [--data PATH] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # so `import lm` works when run as `python benchmarks/bpe.py`

from common import offline_tiktoken_cache  # noqa: E402 (benchmarks/ is on sys.path as the script folder)

VOCAB_SIZE = 1024
REFERENCE_SLICE = 100_000  # characters (= bytes: Tiny Shakespeare is ASCII)
TRAIN_REFERENCE_SLICE = 5_000  # the reference trainer recounts every pair at each of its ~770 merges


def best_of(repeats: int, fn):
    """Run fn() `repeats` times; return (fastest seconds, last result)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def train_hf(text: str):
    """HF tokenizers BPE with the same pre-split (GPT-4 regex), bytes and vocabulary size."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    from lm.tokenizer import ENDOFTEXT, GPT4_PATTERN

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GPT4_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[ENDOFTEXT], show_progress=False)
    tok.train_from_iterator([text], trainer=trainer)  # one sequence: the pre-split matches ours exactly
    return tok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "tinyshakespeare.txt",
                        help="text to train and encode on (default: ../shared/data/tinyshakespeare.txt)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the best is kept")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"error: no text at {args.data} (pass --data PATH to Tiny Shakespeare)")
    if args.repeats < 1:
        sys.exit("error: --repeats must be at least 1")
    offline_tiktoken_cache()
    import regex
    import tiktoken

    from lm.bpe import train_merges_reference
    from lm.tokenizer import GPT4_PATTERN, BPETokenizer

    text = args.data.read_text(encoding="utf-8")
    n_bytes = len(text.encode("utf-8"))
    mbps = lambda nbytes, s: nbytes / 1e6 / s  # noqa: E731
    rows = []  # (what, ours, reference, ours/ref, note)

    t_ours, ours = best_of(args.repeats, lambda: BPETokenizer.train(text, VOCAB_SIZE, pattern="gpt4"))
    t_hf, hf = best_of(args.repeats, lambda: train_hf(text))
    threads = os.environ.get("RAYON_NUM_THREADS") or os.cpu_count()
    rows.append((f"train {VOCAB_SIZE} vocab (s)", f"{t_ours:.3f}", f"{t_hf:.3f}", f"{t_ours / t_hf:.2f}",
                 f"HF tokenizers, up to {threads} threads; goal <= 5 s"))
    hf_merges = len(json.loads(hf.to_str())["model"]["merges"])
    rows.append(("  vocab = 256 bytes+merges+special", f"256+{len(ours.merges)}+{len(ours.special_tokens)}",
                 f"256+{hf_merges}+1", "", f"totals {ours.vocab_size} / {hf.get_vocab_size()}"))

    t_enc, ids = best_of(args.repeats, lambda: ours.encode(text))
    try:
        gpt2 = tiktoken.get_encoding("r50k_base")
    except Exception as exc:  # offline without the rank file: report and go on
        gpt2 = None
        print(f"note: tiktoken r50k_base unavailable ({type(exc).__name__}); GPT-2 figures skipped")
    if gpt2:
        t_gpt2, gpt2_ids = best_of(args.repeats, lambda: gpt2.encode_ordinary(text))
        rows.append(("encode all, 1 thread (MB/s)", f"{mbps(n_bytes, t_enc):.2f}", f"{mbps(n_bytes, t_gpt2):.2f}",
                     f"{t_gpt2 / t_enc:.2f}", "tiktoken r50k_base (GPT-2); goal >= 4 MB/s"))
    else:
        rows.append(("encode all, 1 thread (MB/s)", f"{mbps(n_bytes, t_enc):.2f}", "-", "-", "goal >= 4 MB/s"))

    head = text[:REFERENCE_SLICE]
    t_ref, ref_ids = best_of(args.repeats, lambda: ours.encode_reference(head))
    same = "OK" if ref_ids == ours.encode(head) else "MISMATCH"
    rows.append((f"encode_reference {len(head) // 1000} kB (MB/s)", f"{mbps(len(head.encode()), t_ref):.2f}",
                 "-", "-", f"pure Python; ids == encode: {same}"))

    small = text[:TRAIN_REFERENCE_SLICE]
    t_small, fast = best_of(args.repeats, lambda: BPETokenizer.train(small, VOCAB_SIZE, pattern="gpt4"))
    t_naive, naive = best_of(1, lambda: train_merges_reference(regex.findall(GPT4_PATTERN, small), len(fast.merges)))
    same = "OK" if naive == fast.merges else "MISMATCH"
    rows.append((f"train {len(small) // 1000} kB (s)", f"{t_small:.3f}", f"{t_naive:.3f}", f"{t_small / t_naive:.3f}",
                 f"reference trainer, run once; merges equal: {same}"))

    hf_ids = hf.encode(text).ids
    for label, fmt in (("tokens in text", lambda n: f"{n:,}"), ("bytes per token", lambda n: f"{n_bytes / n:.3f}")):
        rows.append((label, fmt(len(ids)), fmt(len(gpt2_ids)) if gpt2 else "-", "",
                     f"ref: GPT-2 (50,257 vocab); HF {VOCAB_SIZE}: {fmt(len(hf_ids))}"))

    print(f"{args.data.name}: {len(text):,} characters, {n_bytes:,} bytes; best of {args.repeats}")
    table = [("", "ours", "reference", "ours/ref", "")] + rows
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        print("  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:4], widths[1:])] + [r[4]]).rstrip())
    verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    print(f"goals: train <=5s: {verdict(t_ours <= 5)}, encode >=4MB/s: {verdict(mbps(n_bytes, t_enc) >= 4)}")


if __name__ == "__main__":
    main()
