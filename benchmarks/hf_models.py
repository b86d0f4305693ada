"""Benchmark of an open-weight model inside the explorer beside transformers, on CPU: import,
load time and peak memory, the Attention page's pass (every head's weights), and
generation tokens/s with the KV cache.

Prints figures, checks nothing (it is not a test). The real weights cannot be downloaded on
the machines this project is built on, so the model is the exact shape of a known one
(lm.open_models; default SmolLM2-135M: 30 layers, 9 query and 3 key/value heads, 576 wide,
134,515,008 parameters) with random weights, saved by transformers' save_pretrained beside
a word-level tokenizer.json of the model's full vocabulary, and imported by lm.hf_import as
`python -m lm import-hf --from FOLDER` does. Time and memory do not depend on the values.

  1. import: seconds from the Hugging Face folder to a checkpoint folder.
  2. load: a fresh Python process for each side loads the model (lm.checkpoint.load_checkpoint;
     transformers' from_pretrained, fp32) and runs one forward pass; seconds to load, and its
     resident memory before and at its peak (Linux: /proc/self/status). Sides alternate.
  3. attention: the Attention page's pass over --tokens tokens, which keeps every head's
     weights (explorer.attention_view.run_attention: lm.inspect.attention_pass of "weights");
     beside transformers' base model with output_attentions and eager attention, which keeps
     every head's weights too. Neither computes the logits, which the page does not show (the
     head is about a fifth of a full pass here); ours also stops after the last layer's
     attention, as the last block's MLP changes no weight (1/n_layer of the MLPs' time). The
     "Step through one head" tab's own pass, layer 0's queries, keys, values, scores, weights
     and outputs, is timed beside it (it stops after that layer).
  4. generation: greedy, --new-tokens after a 16-token prompt, KV cache on both sides
     (lm.generate; transformers' generate, made to run all the tokens).
Timings 3 and 4: the best of --repeats after a warm-up, the two sides taking turns; the
ratio is the median of each turn's ratio, steadier than the bests on a busy machine.

Run from the repository root:  .venv/bin/python benchmarks/hf_models.py [--model NAME] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # so `import lm` works when run as `python benchmarks/hf_models.py`

from common import paired_ratio  # noqa: E402 (benchmarks/ is on sys.path as the script folder)
from gpt2 import memory_mb  # noqa: E402

SEED = 1337


def save_random(hf_config: dict, folder: Path) -> None:
    """A random transformers model of this config, and a tokenizer.json with one word per id."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(SEED)
    config = AutoConfig.for_model(**hf_config)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    vocab = {f"w{i}": i for i in range(hf_config["vocab_size"])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(folder / "tokenizer.json"))


def measure_load(side: str, folder: str) -> None:
    """In a child process: load one side's model, run it once, print seconds and memory as JSON."""
    import torch

    before = memory_mb()
    start = time.perf_counter()
    if side == "ours":
        from lm.checkpoint import load_checkpoint

        model = load_checkpoint(folder).model
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    seconds = time.perf_counter() - start
    with torch.inference_mode():
        model(torch.zeros(1, 64, dtype=torch.long))
    print(json.dumps({"seconds": seconds, "before": before, "after": memory_mb()}))


def load_figures(folders: dict[str, Path], repeats: int, env: dict) -> dict[str, dict]:
    """Each side's fastest load and highest peak over `repeats` fresh processes, sides alternating."""
    figures: dict[str, dict] = {}
    for _ in range(repeats):
        for side, folder in folders.items():
            child = subprocess.run([sys.executable, __file__, "--measure-load", side, str(folder)],
                                   env=os.environ | env, capture_output=True, text=True, check=True)
            got = json.loads(child.stdout.strip().splitlines()[-1])
            kept = figures.setdefault(side, got)
            kept["seconds"] = min(kept["seconds"], got["seconds"])
            kept["after"]["peak"] = max(kept["after"]["peak"], got["after"]["peak"])
    return figures


def interleaved(repeats: int, sides: dict) -> dict[str, list[float]]:
    """Each side's seconds in every turn, after a warm-up, the sides taking turns `repeats` times."""
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    for side, fn in sides.items():
        fn()  # warm-up
    for _ in range(repeats):
        for side, fn in sides.items():
            start = time.perf_counter()
            fn()
            seconds[side].append(time.perf_counter() - start)
    return seconds


def main() -> None:
    from lm.open_models import OPEN_MODELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(OPEN_MODELS), default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier on a busy machine)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side after a warm-up")
    parser.add_argument("--tokens", type=int, default=128, help="tokens in the attention pass (default 128)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens to generate (default 64)")
    parser.add_argument("--measure-load", nargs=2, metavar=("SIDE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_load:
        return measure_load(*args.measure_load)
    import torch
    from transformers import AutoModelForCausalLM

    from lm import inspect
    from lm.checkpoint import load_checkpoint
    from lm.generate import Sampling, generate
    from lm.hf_import import import_hf

    torch.set_num_threads(args.threads)
    spec = OPEN_MODELS[args.model]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="hf-bench-") as tmp:
        hf_folder = Path(tmp) / "hf"
        save_random(spec.hf_config, hf_folder)
        start = time.perf_counter()
        ours_folder = import_hf(str(hf_folder), Path(tmp) / "ours")
        import_seconds = time.perf_counter() - start
        load = load_figures({"ours": ours_folder, "transformers": hf_folder}, args.repeats,
                            {"OMP_NUM_THREADS": str(args.threads)})

        ours = load_checkpoint(ours_folder)
        theirs = AutoModelForCausalLM.from_pretrained(hf_folder, dtype=torch.float32, attn_implementation="eager").eval()
        theirs.generation_config.eos_token_id = None
        ids = torch.randint(spec.hf_config["vocab_size"], (1, args.tokens), generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            attention = interleaved(args.repeats, {
                "ours": lambda: inspect.attention_pass(ours.model, ids[0].tolist(), ("weights",)),
                "transformers": lambda: theirs.base_model(ids, output_attentions=True),
                "one layer": lambda: inspect.attention_pass(ours.model, ids[0].tolist(), layer=0),
            })
            prompt = ids[:, :16]
            settings = Sampling(temperature=0, max_new_tokens=args.new_tokens, stop_at_end_of_text=False)
            generation = interleaved(args.repeats, {
                "ours": lambda: sum(1 for _ in generate(ours.model, ours.tokenizer, prompt[0].tolist(), settings)),
                "transformers": lambda: theirs.generate(prompt, max_new_tokens=args.new_tokens,
                                                        min_new_tokens=args.new_tokens, do_sample=False),
            })
    load_after = os.getloadavg()[0]

    parameters = sum(p.numel() for p in ours.model.parameters())
    print(f"model: {spec.label} shape, random weights (seed {SEED}), {parameters:,} parameters, fp32, context "
          f"{ours.model.config.block_size:,}; torch {torch.__version__}, CPU, {args.threads} thread(s); "
          f"load average {load_before:.1f} before, {load_after:.1f} after")
    print(f"import (Hugging Face folder -> checkpoint folder): {import_seconds:.2f} s")
    print(f"{'':34}{'ours':>12}{'transformers':>14}{'ours/theirs':>13}")
    rows = [
        ("load, s", load["ours"]["seconds"], load["transformers"]["seconds"], None),
        ("peak memory while loading, MB", load["ours"]["after"]["peak"], load["transformers"]["after"]["peak"], None),
        (f"attention pass, {args.tokens} tokens, s", min(attention["ours"]), min(attention["transformers"]),
         paired_ratio(attention, "ours", "transformers")),
        ("  step-through's one layer, s", min(attention["one layer"]), min(attention["transformers"]),
         paired_ratio(attention, "one layer", "transformers")),
        (f"generation, {args.new_tokens} tokens, tokens/s", args.new_tokens / min(generation["ours"]),
         args.new_tokens / min(generation["transformers"]), paired_ratio(generation, "transformers", "ours")),
    ]
    for label, mine, theirs_value, ratio in rows:
        print(f"{label:34}{mine:>12.2f}{theirs_value:>14.2f}{ratio or mine / theirs_value:>13.2f}")


if __name__ == "__main__":
    main()
