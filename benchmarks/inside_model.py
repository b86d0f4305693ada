"""Benchmark of the Inside the model page's computations on CPU: how long each view takes
after its inputs change (a cached view redraws from the checkpoint cache without computing).

Two models: the bundled demo (models/shakespeare-demo: 4 layers, 4 heads, 128 wide) and a
GPT-2-small-shaped model (12 layers, 12 heads, 768 wide, vocabulary 50,257, GPT-2's
tokenizer) with random weights: time does not depend on the values. Text: 64 tokens of
Tiny Shakespeare; the corrupted prompt for patching changes one token, in the middle
(position 32) and near the start (position 1, the most positions to patch). GPT-2 also
gets the indirect-object example (15 tokens), the page's preset for it.

Each view is the lm function its tab calls: the logit lens (bf16 head for GPT-2's vocabulary on
a CPU with native bf16), direct logit attribution at the last position, the patching grids as
the page computes them (exact within lm.attribution_patching.EXACT_BUDGET, else attribution
patching) and then, right after them as on the page, the exact check of the CHECKED strongest residual
cells and heads (lm.attribution_patching.CHECKED; it reuses the grids' traces, kept per model), the
embedding map (once per model) and one token's neighbours, the top neurons at one position, and
the corpus index of neurons (once per model, built in the background while the tab shows the
neurons: 24 windows of 64 tokens). --exact adds exact patching of every cell (minutes on GPT-2).
Best of --repeats, the views interleaved within each repeat so a busy moment hits them alike; a
first warm-up call of each view is not counted (it checks the walk once per model and length,
one forward pass more). Torch threads as the app sets them (lm.device.use_threads_for_server).
Timings on a machine shared with other work are noisy: the 1-minute load average is printed, and
beside each wall time the process's CPU time (one thread: about the wall time on an idle core).

Run from the repository root:  .venv/bin/python benchmarks/inside_model.py [--repeats N] [--skip-gpt2] [--exact]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, offline_tiktoken_cache  # noqa: E402

TOKENS = 64


def patching_views(model, name: str, clean: list[int], corrupted: list[int], n: int, answers, exact: bool
                   ) -> dict[str, Callable[[], object]]:
    """The page's patching grids, the exact check of their strongest cells, and (`exact`) every cell exactly."""
    from lm.attribution_patching import CHECKED, check_strongest, choose_patching
    from lm.patching import KEPT, activation_patching

    def fresh_grids():  # as after the inputs change: no traces kept from the last repeat
        KEPT.forget(model)
        return choose_patching(model, clean, corrupted, n, answers)

    grids = fresh_grids()
    found = {f"patching grids, {name}": fresh_grids}
    if not grids.exact:
        residual, heads = grids.strongest(CHECKED)
        found[f"  then {CHECKED}+{CHECKED} strongest cells exactly, {name}"] = lambda: check_strongest(
            model, clean, corrupted, n, answers, residual, heads)
    if exact:
        found[f"  every cell exactly (reference), {name}"] = lambda: activation_patching(model, clean, corrupted, n,
                                                                                          answers)
    return found


def views(checkpoint, ids: list[int], corpus: list[list[int]], exact: bool) -> dict[str, Callable[[], object]]:
    """Each view's computation on this model and text."""
    from lm.embedding_map import embedding_map, nearest_tokens
    from lm.lens import direct_attribution, logit_lens
    from lm.neurons import index_neurons, top_neurons

    model = checkpoint.model
    n = min(checkpoint.tokenizer.vocab_size, model.config.vocab_size)
    middle = list(ids)
    middle[32] = (middle[32] + 1) % n
    start = list(ids)
    start[1] = (start[1] + 1) % n
    answers = (ids[-1], (ids[-1] + 1) % n)  # fixed answers: a random model's own guesses may coincide
    return {
        "logit lens": lambda: logit_lens(model, ids, n),
        "direct logit attribution": lambda: direct_attribution(model, ids, len(ids) - 1, ids[-1]),
        **patching_views(model, "change at #32", ids, middle, n, answers, exact),
        **patching_views(model, "change at #1", ids, start, n, answers, exact),
        "embedding map (once per model)": lambda: embedding_map(model, n),
        "a token's nearest neighbours": lambda: nearest_tokens(model, ids[-1], n),
        "top neurons at a token": lambda: top_neurons(model, ids, len(ids) - 1, 6),
        "neuron corpus index (background, once per model)": lambda: index_neurons(model, corpus),
    }


def measure(name: str, checkpoint, text: str, repeats: int, exact: bool,
            extra: dict[str, Callable[[], object]] | None = None) -> None:
    from lm.neurons import windows

    ids = checkpoint.tokenizer.encode(text)
    corpus = windows(ids, TOKENS, 24)
    ids = ids[:TOKENS]
    chosen = views(checkpoint, ids, corpus, exact) | (extra or {})
    best = {view: float("inf") for view in chosen}
    cpu = dict(best)
    for compute in chosen.values():  # warm-up: the walk's check once per model and length
        compute()
    for _ in range(repeats):
        for view, compute in chosen.items():
            began, began_cpu = time.perf_counter(), time.process_time()
            compute()
            best[view] = min(best[view], time.perf_counter() - began)
            cpu[view] = min(cpu[view], time.process_time() - began_cpu)
    print(f"\n{name} ({len(ids)} tokens), best of {repeats}; 1-minute load average {os.getloadavg()[0]:.1f}")
    print(f"  {'':<52} {'wall':>9} {'CPU':>9}")
    for view, seconds in best.items():
        print(f"  {view:<52} {seconds:7.3f} s {cpu[view]:7.3f} s{'   over 2 s' if seconds > 2 else ''}")


def gpt2_small():
    """GPT-2 small's shape with random weights and GPT-2's tokenizer."""
    import torch

    from lm.checkpoint import Checkpoint
    from lm.model import GPT, GPTConfig
    from lm.tokenizer import TiktokenTokenizer

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)).eval()
    return Checkpoint(model, TiktokenTokenizer("r50k_base"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-gpt2", action="store_true", help="only the demo model")
    parser.add_argument("--exact", action="store_true", help="also patch every cell exactly (minutes on GPT-2)")
    args = parser.parse_args()
    offline_tiktoken_cache()
    from explorer.inside_examples import INDIRECT_OBJECT
    from lm.checkpoint import load_checkpoint
    from lm.device import use_threads_for_server

    print(f"torch threads: {use_threads_for_server()} (as the app sets them); CPUs: {os.cpu_count()}")
    text = (REPO.parent / "shared" / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:20_000]
    measure("demo model (4 layers, 128 wide)", load_checkpoint(REPO / "models" / "shakespeare-demo"), text,
            args.repeats, args.exact)
    if not args.skip_gpt2:
        gpt2 = gpt2_small()
        tokenizer = gpt2.tokenizer
        clean, corrupted = tokenizer.encode(INDIRECT_OBJECT.clean), tokenizer.encode(INDIRECT_OBJECT.corrupted)
        answers = tuple(tokenizer.encode(answer)[0] for answer in (INDIRECT_OBJECT.clean_answer,
                                                                   INDIRECT_OBJECT.corrupted_answer))
        extra = patching_views(gpt2.model, "indirect object (15 tokens)", clean, corrupted, tokenizer.vocab_size,
                               answers, args.exact)
        measure("GPT-2-small-shaped model (12 layers, 768 wide, random weights)", gpt2, text, args.repeats, args.exact,
                extra)


if __name__ == "__main__":
    main()
