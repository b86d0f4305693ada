"""What a training checkpoint costs to save: `lm.run_folder.Run.save` (config.json, tokenizer.json,
model.safetensors and state.pt with AdamW's moments) of a tiny model and of the demo model
(models/shakespeare-demo), timed --repeats times into one folder; prints the median and the
fastest. --tree times another copy of the code (a folder holding lm/), so a change's cost
(lm.journal: staging, sha256, fsyncs) is the difference of two runs of this script.

Run from the repository root:  .venv/bin/python benchmarks/save_cost.py [--repeats 15] [--tree DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed_saves(model, tokenizer, repeats: int) -> list[float]:
    import torch
    from lm.run_folder import Run

    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long)).loss.backward()
    optimizer.step()  # AdamW's moments exist, as in a real state.pt
    state = {"step": 1, "best_val_loss": 1.0, "optimizer": optimizer.state_dict(), "rngs": [{"cpu": torch.get_rng_state()}]}
    run = Run(tempfile.mkdtemp(prefix="save-cost-"))
    seconds = []
    for step in range(repeats):
        started = time.perf_counter()
        run.save(model, tokenizer, {"step": 1}, state)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--tree", type=Path, default=REPO)
    args = parser.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    import torch
    from lm.checkpoint import load_checkpoint
    from lm.model import GPT, GPTConfig

    torch.set_num_threads(1)
    demo = load_checkpoint(REPO / "models" / "shakespeare-demo")
    tiny = GPT(GPTConfig(vocab_size=320, block_size=32, n_layer=1, n_head=2, n_embd=32))
    models = {"tiny (1 layer, 32 wide)": (tiny, demo.tokenizer), "demo": (demo.model, demo.tokenizer)}
    print(f"code: {args.tree}")
    for name, (model, tokenizer) in models.items():
        params = sum(p.numel() for p in model.parameters())
        seconds = timed_saves(model.train(), tokenizer, args.repeats)
        print(f"{name:>24}: {params / 1e6:6.2f}M parameters, save median {statistics.median(seconds) * 1e3:7.1f} ms, "
              f"fastest {min(seconds) * 1e3:7.1f} ms ({args.repeats} saves)")


if __name__ == "__main__":
    main()
