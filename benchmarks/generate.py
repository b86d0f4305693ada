"""Benchmark of generation speed (lm.generate) against Hugging Face transformers' GPT-2, on CPU.

Prints figures, checks nothing but two speed goals (it is not a test). One model
size for every variant: 6 layers, 6 heads, 384 wide, context 256 (our
block_size = HF's n_positions), GPT-2's vocabulary of 50,257 (so the GPT-2
tokenizer, tiktoken r50k_base, can give every id's bytes), batch 1, fp32 weights,
random from a seeded init, greedy decoding (temperature 0) so every
variant does the same work, under torch.inference_mode. Each variant is run
once to warm up, then all are timed in turns, --repeats rounds (so a change in
the machine's load hits each alike); each one's fastest run is kept.

  a. ours, `lm.generate.generate(..., use_cache=True, explain=False)` (KV cache; the
     plain path the CLI and training samples take: a token and its text per step), as
     it runs here: on a CPU with native bf16 its output head is read in bf16, with the
     most likely tokens' logits in fp32 (lm.readout); each cached token's pass through
     the blocks on one thread, the head on all of --threads (lm.generate.one_thread);
  f. ours, the same with LM_CPU_BF16=0: every number fp32 (what a CPU without bf16 runs;
     the same as (a) on one);
  e. ours, the same with explain=True (what the Generate page runs: each step also
     carries both softmaxes' probabilities of the token and the top 10 alternatives);
  g. at --threads 2 and more: ours, (a) with each cached token's head on one thread too
     (not a goal's row: beside (a) it shows what a parallel head gains on this machine;
     on a loaded one it loses, its threads waiting for cores other processes hold);
  b. ours, `use_cache=False, explain=False` (the whole prefix recomputed for every token);
  c. transformers `GPT2LMHeadModel.generate(do_sample=False, use_cache=True)`, fp32,
     with min_new_tokens = max_new_tokens and no end-of-text token, so it never
     stops early; our weights are copied into it as they are (same names, same
     [in, out] layout as its Conv1D).

New tokens and the context. 256 new tokens at context 256 do not fit behind any
prompt: the prompt's first token already takes position 0. HF cannot go past
n_positions (its position table has 256 rows), and ours would slide its window
for the last token and recompute the whole 256-token window without the cache,
which is different work. So the default is a 1-token prompt and 255 new tokens:
256 positions, exactly the context, the same work on both sides. Pass
--prompt-len and --new-tokens to change that; past the context only our rows run.

Every variant yields its tokens one at a time as it goes (ours a Step with the
token's bytes and text, (e) with its explanation too); HF returns them at the end.

Figures: wall-clock seconds (best of the rounds) and new tokens per second
from them; the goals use the median over the rounds of the ratio of two
variants' times within a round (common.paired_ratio: paired, so a burst of load on
a shared machine mostly cancels; every variant makes the same number of tokens, so
a ratio of times is one of tokens/s); beside them the process's CPU seconds (all
threads; best of the rounds), which other processes on a shared machine
disturb less, and the goals' ratios by CPU seconds too. The 1-minute load average
before and after is printed: above the core count, wall-clock ratios between
variants swing by tens of percent from run to run, most at --threads 2 and more,
where every parallel operation waits for a thread another process holds; compare
on a quiet machine.

Also checked (printed OK/MISMATCH): (a) and (b) choose the same ids; (a) and the
all-fp32 (f) choose the same ids; HF with our weights chooses the same ids as (a); and
the largest logit difference between our forward and HF's on the whole generated sequence.

Run from the repository root:  .venv/bin/python benchmarks/generate.py [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # so `import lm` works when run as `python benchmarks/generate.py`

from common import offline_tiktoken_cache, paired_ratio, transformers_gpt2  # noqa: E402 (benchmarks/ is on sys.path as the script folder)

N_LAYER, N_HEAD, N_EMBD, CONTEXT = 6, 6, 384, 256
VOCAB_SIZE = 50_257  # GPT-2's, on both sides
PROMPT_TEXT = "First Citizen: Before we proceed any further, hear me speak."
SEED = 1337
CACHED_SPEEDUP_GOAL = 5.0  # (a) over (b)
VS_HF_GOAL = 2.0  # (a) tokens/s over (c) tokens/s


def best_of(repeats: int, variants: dict) -> tuple[dict, dict, dict]:
    """Warm up every fn in `variants` once, then time them in turns (a, e, c, b, a, e, ...)
    `repeats` times, so a change in the machine's load hits all of them alike.
    Returns {name: (fastest wall seconds, fastest CPU seconds of the process, last result)},
    then {name: [wall seconds of each round]} and {name: [CPU seconds of each round]}."""
    results = {name: fn() for name, fn in variants.items()}
    rounds = {name: [] for name in variants}
    cpu_rounds = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            results[name] = fn()
            rounds[name].append(time.perf_counter() - start)
            cpu_rounds[name].append(time.process_time() - start_cpu)
    timed = {name: (min(rounds[name]), min(cpu_rounds[name]), results[name]) for name in variants}
    return timed, rounds, cpu_rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant after one warm-up; the best is kept")
    parser.add_argument("--prompt-len", type=int, default=1, help="prompt tokens, taken from a fixed line of text (default 1)")
    parser.add_argument("--new-tokens", type=int, default=None,
                        help=f"tokens to generate (default: {CONTEXT} - prompt length, i.e. fill the context exactly)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own choice)")
    parser.add_argument("--no-uncached", action="store_true", help="skip variant (b), the slowest")
    args = parser.parse_args()
    if args.repeats < 1:
        sys.exit("error: --repeats must be at least 1")
    if args.threads is not None and args.threads < 1:
        sys.exit("error: --threads must be at least 1")
    offline_tiktoken_cache()
    import torch

    from lm.generate import Sampling, generate
    from lm.readout import bf16_head_helps
    from lm.model import GPT, GPTConfig
    from lm.tokenizer import TiktokenTokenizer, TokenizerError

    try:
        tokenizer = TiktokenTokenizer("r50k_base")
    except TokenizerError as exc:
        sys.exit(f"error: {exc}")
    prompt_ids = tokenizer.encode(PROMPT_TEXT)
    if not 1 <= args.prompt_len <= len(prompt_ids):
        sys.exit(f"error: --prompt-len must be between 1 and {len(prompt_ids)}")
    prompt_ids = prompt_ids[: args.prompt_len]
    new_tokens = CONTEXT - len(prompt_ids) if args.new_tokens is None else args.new_tokens
    if new_tokens < 1:
        sys.exit("error: --new-tokens must be at least 1")
    fits = len(prompt_ids) + new_tokens <= CONTEXT
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    torch.manual_seed(SEED)
    ours = GPT(GPTConfig(vocab_size=VOCAB_SIZE, block_size=CONTEXT, n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD,
                         dropout=0.0)).eval()
    settings = Sampling(temperature=0.0, max_new_tokens=new_tokens, stop_at_end_of_text=False)

    def run_ours(use_cache: bool, explain: bool = False, fp32: bool = False, whole_step_one_thread: bool = False):
        def fn():
            with torch.inference_mode(), all_fp32(fp32), head_on_one_thread(whole_step_one_thread):
                steps = generate(ours, tokenizer, prompt_ids, settings, use_cache=use_cache, explain=explain)
                return [step.token_id for step in steps]
        return fn

    head = "bf16 (lm.readout)" if bf16_head_helps(ours.lm_head.weight) else "fp32"
    variants = {"a": run_ours(True), "f": run_ours(True, fp32=True), "e": run_ours(True, explain=True)}
    if torch.get_num_threads() > 1:
        variants["g"] = run_ours(True, whole_step_one_thread=True)

    hf_note = None
    try:
        import transformers
    except ImportError:
        hf_note = "transformers is not installed (pip install -r requirements-dev.txt): row (c) skipped"
    else:
        if not fits:
            hf_note = (f"prompt {len(prompt_ids)} + {new_tokens} new > n_positions {CONTEXT}: HF cannot go past its "
                       f"context, row (c) skipped")
    if hf_note is None:
        hf = transformers_gpt2(ours).eval()
        prompt = torch.tensor([prompt_ids])

        def run_hf():
            with torch.inference_mode():
                out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                  max_new_tokens=new_tokens, min_new_tokens=new_tokens, use_cache=True,
                                  eos_token_id=None, pad_token_id=0)
            return out[0, len(prompt_ids):].tolist()

        variants["c"] = run_hf
    if not args.no_uncached:  # last in each round, so (a) and (c) run back to back
        variants["b"] = run_ours(False)

    load_before = os.getloadavg()[0]
    timed, rounds, cpu_rounds = best_of(args.repeats, variants)
    load_after = os.getloadavg()[0]
    t_cached, cpu_cached, ids_cached = timed["a"]
    t_plain, cpu_plain, ids_plain = timed.get("b", (None, None, None))
    t_hf, cpu_hf, ids_hf = timed.get("c", (None, None, None))
    t_explained, cpu_explained, ids_explained = timed["e"]
    t_fp32, cpu_fp32, ids_fp32 = timed["f"]
    t_one, cpu_one, ids_one = timed.get("g", (None, None, None))
    rows = [("a. ours, KV cache", t_cached, cpu_cached, len(ids_cached) / t_cached,
             f"generate(use_cache=True, explain=False); output head {head}"),
            ("f. ours, KV cache, all fp32", t_fp32, cpu_fp32, len(ids_fp32) / t_fp32, "the same with LM_CPU_BF16=0"),
            ("e. ours, KV cache, explained", t_explained, cpu_explained, len(ids_explained) / t_explained,
             "explain=True: probabilities and top 10 per step")]
    if t_one is not None:
        rows.append(("g. ours, KV cache, 1 thread", t_one, cpu_one, len(ids_one) / t_one,
                     "(a) with each cached token's head on one thread too, not only its blocks"))
    if t_plain is not None:
        rows.append(("b. ours, no cache", t_plain, cpu_plain, len(ids_plain) / t_plain,
                     "use_cache=False: whole prefix every token"))
    if t_hf is not None:
        rows.append(("c. transformers GPT-2", t_hf, cpu_hf, len(ids_hf) / t_hf,
                     f"{transformers.__version__}, attn {hf.config._attn_implementation}; our weights copied"))

    print(f"model: {N_LAYER} layers, {N_HEAD} heads, {N_EMBD} wide, context {CONTEXT}, vocab {VOCAB_SIZE:,} (GPT-2's), "
          f"{sum(p.numel() for p in ours.parameters()):,} parameters, fp32, seed {SEED}")
    window = "fits the context" if fits else f"exceeds the context {CONTEXT}: ours slides its window (no cache) there"
    print(f"work: batch 1, prompt {len(prompt_ids)} token(s) {prompt_ids}, {new_tokens} new tokens, greedy; "
          f"prompt + new = {len(prompt_ids) + new_tokens} positions, {window}")
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads (torch.get_num_threads), "
          f"inference_mode; best of {args.repeats} and medians of paired ratios, interleaved, after 1 warm-up each")
    print(f"machine load (1-minute average) before / after: {load_before:.1f} / {load_after:.1f} on {os.cpu_count()} "
          f"cores; above the core count the wall-clock figures are noisy (other processes hold the cores)")
    table = [("variant", "seconds", "CPU s", "new tok/s", "")]
    table += [(v, f"{s:.3f}", f"{c:.3f}", f"{r:.1f}", n) for v, s, c, r, n in rows]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    for r in table:
        print("  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:4], widths[1:])] + [r[4]]).rstrip())
    print("(seconds: wall clock, which the goals use; CPU s: the process's CPU time, all threads, less disturbed "
          "by other processes on a busy machine)")
    if hf_note:
        print(f"note: {hf_note}")

    speedup = vs_hf = None
    if t_plain is not None:
        speedup = paired_ratio(rounds, "b", "a")
        print(f"cached / uncached speedup: {speedup:.2f}x (goal >= {CACHED_SPEEDUP_GOAL:g}x); explained cached / "
              f"uncached {paired_ratio(rounds, 'b', 'e'):.2f}x (median of paired ratios)")
    if t_hf is not None:
        vs_hf = paired_ratio(rounds, "c", "a")
        print(f"ours cached / transformers (tokens/s): {vs_hf:.2f} (goal >= {VS_HF_GOAL:g}); explained "
              f"{paired_ratio(rounds, 'c', 'e'):.2f}; all fp32 {paired_ratio(rounds, 'c', 'f'):.2f} "
              f"(median of paired ratios)")
    if t_plain is not None and t_hf is not None:
        print(f"the same by CPU seconds (all threads; median of paired ratios): cached / uncached "
              f"{paired_ratio(cpu_rounds, 'b', 'a'):.2f}x, ours cached / transformers {paired_ratio(cpu_rounds, 'c', 'a'):.2f}")

    verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    same = lambda a, b: "OK" if a == b else f"MISMATCH (first difference at new token {first_diff(a, b)})"  # noqa: E731
    if ids_plain is not None:
        print(f"greedy ids, (a) cached == (b) uncached: {same(ids_cached, ids_plain)}")
    print(f"greedy ids, (a) plain == (e) explained: {same(ids_cached, ids_explained)}")
    print(f"greedy ids, (a) output head {head} == (f) all fp32: {same(ids_cached, ids_fp32)}")
    if ids_hf is not None:
        print(f"greedy ids, (a) ours == (c) transformers: {same(ids_cached, ids_hf)}")
        sequence = torch.tensor([prompt_ids + ids_cached[: CONTEXT - len(prompt_ids)]])
        with torch.inference_mode():
            diff = (ours(sequence).logits - hf(sequence).logits).abs().max().item()
        print(f"logits on the generated sequence ({sequence.size(1)} positions), max |ours - transformers|: "
              f"{diff:.2e} ({'OK' if diff < 1e-3 else 'MISMATCH'})")
    if ids_one is not None:
        vs_hf_one = f", (g) / transformers {paired_ratio(rounds, 'c', 'g'):.2f}" if ids_hf is not None else ""
        print(f"greedy ids, (a) == (g) head on one thread: {same(ids_cached, ids_one)}; (g) / (a) tokens/s "
              f"{paired_ratio(rounds, 'a', 'g'):.2f}{vs_hf_one} (median of paired ratios)")
    print(f"first new ids (a): {ids_cached[:8]}")
    goals = [f"cache speedup >={CACHED_SPEEDUP_GOAL:g}x: {verdict(speedup >= CACHED_SPEEDUP_GOAL) if speedup else 'not run'}",
             f"ours cached vs transformers >={VS_HF_GOAL:g}: {verdict(vs_hf >= VS_HF_GOAL) if vs_hf else 'not run'}"]
    print("goals: " + ", ".join(goals))


@contextlib.contextmanager
def all_fp32(on: bool):
    """While on, LM_CPU_BF16=0: generation computes every number in fp32, as on a CPU without bf16."""
    from lm.device import CPU_BF16_ENV

    before = os.environ.get(CPU_BF16_ENV)
    if on:
        os.environ[CPU_BF16_ENV] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CPU_BF16_ENV, None)
        else:
            os.environ[CPU_BF16_ENV] = before


@contextlib.contextmanager
def head_on_one_thread(on: bool):
    """While on, a cached token's head runs inside lm.generate.one_thread as its blocks do: row (g),
    what a loaded machine favours (no parallel operation waits for a thread another process holds)
    and a quiet one with several cores does not (the head's product splits well)."""
    from lm import generate as generation

    plain = generation.next_logits

    def whole_step(model, head, ids, cache):
        with generation.one_thread() if len(ids) == 1 else contextlib.nullcontext():
            return plain(model, head, ids, cache)

    generation.next_logits = whole_step if on else plain
    try:
        yield
    finally:
        generation.next_logits = plain


def first_diff(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


if __name__ == "__main__":
    main()
