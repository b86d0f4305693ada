"""Benchmark of OpenAI's GPT-2 small inside the explorer, on CPU: importing it, memory after
loading it, the Attention page for 64 tokens, and generation tokens/s with the KV cache.

Prints figures, checks nothing (it is not a test). The real weights cannot be downloaded
on the machines this project is built on, so the model is GPT-2 small's exact shape (12
layers, 12 heads, 768 wide, context 1,024, vocabulary 50,257: 124,439,808 parameters)
with random weights from a seeded init, written as openai-community/gpt2's
model.safetensors is (no 'transformer.' prefix, the attn.bias mask buffers, fp32, 548 MB)
and imported by lm.gpt2.import_gpt2, as `python -m lm import-gpt2 --from` does. Random
weights cost what the real ones cost (time and memory do not depend on the values); the
text they write is gibberish, and generation is told not to stop at <|endoftext|>.

  1. import: seconds from the file to a checkpoint folder (read, check, copy, write).
  2. memory: a fresh Python process (torch and lm imported) loads the checkpoint with
     lm.checkpoint.load_checkpoint, as the app's model picker does; its resident memory
     before and after, and its peak while loading (Linux: /proc/self/status).
  3. Attention page, 64 tokens of Tiny Shakespeare: the functions it calls (run_attention,
     one head's map, the 12 x 12 grid of every head), best of --repeats; then the page
     itself headless (streamlit AppTest: the script and the figures' serialisation, not the
     browser's drawing): first open (loads the model), new text, another head, the
     "All heads" tab.
  4. generation: lm.generate with the Generate page's defaults (temperature 0.8, top-k 50)
     and the KV cache, --new-tokens after a 10-token prompt; best of --repeats after a warm-up.

Timings on a machine shared with other work are noisy: the 1-minute load average is printed.

Run from the repository root:  .venv/bin/python benchmarks/gpt2.py [--threads N] [--repeats N] [--new-tokens N]
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
sys.path.insert(0, str(REPO))  # so `import lm` works when run as `python benchmarks/gpt2.py`

from common import offline_tiktoken_cache  # noqa: E402 (benchmarks/ is on sys.path as the script folder)

SEED = 1337
TOKENS = 64
SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"


def memory_mb() -> dict[str, float]:
    """Resident memory now and at its peak, in MB (Linux only; empty elsewhere)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return {name: int(fields[key].split()[0]) / 1024 for name, key in (("rss", "VmRSS"), ("peak", "VmHWM"))}


def measure_load(folder: str) -> None:
    """In a child process: memory before and after load_checkpoint, printed as JSON."""
    import torch

    from lm.checkpoint import load_checkpoint

    before = memory_mb()
    start = time.perf_counter()
    checkpoint = load_checkpoint(folder)
    seconds = time.perf_counter() - start
    after = memory_mb()  # the weights are mapped from the file: pages count once they are read
    with torch.no_grad():
        checkpoint.model(torch.zeros(1, TOKENS, dtype=torch.long))
    print(json.dumps({"before": before, "after": after, "in_use": memory_mb(), "seconds": seconds,
                      "parameters": sum(p.numel() for p in checkpoint.model.parameters())}))


def write_openai_layout(folder: Path) -> Path:
    """A random GPT-2 small saved as openai-community/gpt2's model.safetensors is."""
    import torch
    from safetensors.torch import save_file

    from lm.checkpoint import TIED
    from lm.gpt2 import SIZES
    from lm.model import GPT

    torch.manual_seed(SEED)
    model = GPT(SIZES["small"].config())
    weights = {name.removeprefix("transformer."): p.detach() for name, p in model.state_dict().items() if name != TIED}
    weights |= {f"h.{layer}.attn.bias": torch.ones(1, 1, 1024, 1024).tril() for layer in range(model.config.n_layer)}
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    return folder / "model.safetensors"


def text_of(tokenizer, n_tokens: int, start: int = 0) -> str:
    """A stretch of Tiny Shakespeare that encodes to exactly n_tokens tokens."""
    text = SHAKESPEARE.read_text(encoding="utf-8")[start:]
    ids = tokenizer.encode(text[: 20 * n_tokens])
    for cut in range(n_tokens, n_tokens - 8, -1):
        candidate = tokenizer.decode(ids[:cut])
        if len(tokenizer.encode(candidate)) == n_tokens:
            return candidate
    sys.exit(f"error: no stretch of {n_tokens} tokens found")


def best(repeats: int, fn) -> tuple[float, object]:
    result, fastest = fn(), float("inf")  # the first call warms up
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        fastest = min(fastest, time.perf_counter() - start)
    return fastest, result


def time_attention_page(runs: Path, text: str, other_text: str) -> dict[str, float]:
    """Seconds for each step on the Attention page, headless, with the only model in `runs`."""
    from streamlit.testing.v1 import AppTest

    os.environ |= {"LM_RUNS_DIR": str(runs), "LM_BUNDLED_MODELS": str(runs.parent / "no-bundled-models")}
    at = AppTest.from_file(str(REPO / "app_pages" / "attention.py"), default_timeout=600)
    at.session_state["att_text"] = text
    steps = {
        "first open: load the model, run it, draw one head": lambda: None,
        "new text: run the model, draw one head": lambda: at.text_area(key="att_text").set_value(other_text),
        "another head: draw it (the run is cached)": lambda: at.select_slider(key="att_head").set_value(7),
        "'All heads' tab: the 12 x 12 grid and one head": lambda: at.session_state.__setitem__("att_tab", "All heads"),
    }
    seconds = {}
    for label, change in steps.items():
        start = time.perf_counter()
        change()
        at.run()
        seconds[label] = time.perf_counter() - start
        if at.exception:
            sys.exit(f"error: the Attention page failed: {at.exception[0].value}")
        if not any(f"reads {TOKENS} tokens" in m.value for m in at.markdown):
            sys.exit(f"error: the Attention page did not read {TOKENS} tokens")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (default 1: steadier on a busy machine)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up; the best is kept")
    parser.add_argument("--new-tokens", type=int, default=100, help="tokens to generate (default 100)")
    parser.add_argument("--measure-load", metavar="FOLDER", help=argparse.SUPPRESS)  # the child process of figure 2
    args = parser.parse_args()
    if args.measure_load:
        return measure_load(args.measure_load)
    if args.threads < 1 or args.repeats < 1 or args.new_tokens < 1:
        sys.exit("error: --threads, --repeats and --new-tokens must be at least 1")
    offline_tiktoken_cache()
    import torch
    from explorer.attention_maps import attention_figure, head_grid_figure
    from explorer.attention_view import run_attention
    from lm.checkpoint import load_checkpoint
    from lm.generate import Sampling, generate
    from lm.gpt2 import import_gpt2

    torch.set_num_threads(args.threads)
    env = {"OMP_NUM_THREADS": str(args.threads)}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="gpt2-bench-") as tmp:
        tmp = Path(tmp)
        source = write_openai_layout(tmp / "download")
        start = time.perf_counter()
        folder = import_gpt2(source=source, out=tmp / "runs" / "gpt2-small")
        import_seconds = time.perf_counter() - start

        child = subprocess.run([sys.executable, __file__, "--measure-load", str(folder)], env=os.environ | env,
                               capture_output=True, text=True, check=True)
        load = json.loads(child.stdout.strip().splitlines()[-1])

        checkpoint = load_checkpoint(folder)
        model, tokenizer = checkpoint.model, checkpoint.tokenizer
        text, other_text = text_of(tokenizer, TOKENS), text_of(tokenizer, TOKENS, start=5_000)
        ids = tokenizer.encode(text)
        forward_s, run = best(args.repeats, lambda: run_attention(model, tokenizer, ids))
        map_s, _ = best(args.repeats, lambda: attention_figure(run, 5, 1, "layer 5, head 1").to_json())
        grid_s, _ = best(args.repeats, lambda: head_grid_figure(run.weights, (5, 1), "gpt2-small").to_json())

        page = time_attention_page(tmp / "runs", text, other_text)

        prompt = tokenizer.encode(text)[:10]
        settings = Sampling(temperature=0.8, top_k=50, max_new_tokens=args.new_tokens, seed=0,
                            stop_at_end_of_text=False)

        def sample() -> int:
            with torch.inference_mode():
                return sum(1 for _ in generate(model, tokenizer, prompt, settings))

        generate_s, produced = best(args.repeats, sample)
    load_after = os.getloadavg()[0]

    parameters = load["parameters"]
    print(f"model: GPT-2 small's shape, random weights (seed {SEED}), {parameters:,} parameters, fp32; "
          f"torch {torch.__version__}, CPU, {torch.get_num_threads()} thread(s)")
    print(f"machine load (1-minute average) before / after: {load_before:.1f} / {load_after:.1f} on {os.cpu_count()} cores")
    print(f"1. import (548 MB file in openai-community/gpt2's layout -> checkpoint folder): {import_seconds:.1f} s")
    if load["before"]:
        grown = load["after"]["rss"] - load["before"]["rss"]
        print(f"2. memory, load_checkpoint in a fresh process: {load['before']['rss']:,.0f} MB before (torch, lm), "
              f"{load['after']['rss']:,.0f} MB after (+{grown:,.0f} MB; the weights are {4 * parameters / 1e6:,.0f} MB), "
              f"peak {load['after']['peak']:,.0f} MB; loading took {load['seconds']:.1f} s; after a {TOKENS}-token "
              f"forward pass {load['in_use']['rss']:,.0f} MB (peak {load['in_use']['peak']:,.0f} MB)")
    else:
        print("2. memory: not measured (needs Linux's /proc)")
    print(f"3. Attention page, {TOKENS} tokens; functions, best of {args.repeats}:")
    print(f"     run_attention (the forward pass keeping every head's weights): {forward_s * 1e3:,.0f} ms")
    print(f"     one head's map (figure + JSON): {map_s * 1e3:,.0f} ms;  12 x 12 grid (figure + JSON): {grid_s * 1e3:,.0f} ms")
    print("   the page headless (AppTest), once each:")
    for label, seconds in page.items():
        print(f"     {label}: {seconds:.2f} s")
    print(f"4. generation with the KV cache, {produced} new tokens after a {len(prompt)}-token prompt "
          f"(temperature 0.8, top-k 50), best of {args.repeats}: {produced / generate_s:.1f} tokens/s "
          f"({generate_s:.2f} s)")


if __name__ == "__main__":
    main()
