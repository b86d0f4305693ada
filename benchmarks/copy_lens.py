"""Lesson 6's claims on a trained copy-task model: the block where the logit lens first reads the
answer is the block of the induction head, that head writes the answer (direct logit
attribution) and causes it (patching its output brings the clean answer back).

Train the model first, as Lesson 6 does (`python -m lm train --data task:copy --out FOLDER`, about
4-6 minutes on a CPU; benchmarks/copy_lesson.py leaves one in /tmp/copy-lesson-*/run), then:

    python benchmarks/copy_lens.py FOLDER [--clean qhzbwmkqhz --corrupted qhzxwmkqhz]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lm.checkpoint import load_checkpoint  # noqa: E402
from lm.detectors import head_scores  # noqa: E402
from lm.lens import direct_attribution, logit_lens  # noqa: E402
from lm.patching import activation_patching  # noqa: E402
from lm.tasks import probe_vocabulary  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--clean", default="qhzbwmkqhz", help="Lesson 6's text")
    parser.add_argument("--corrupted", default="qhzxwmkqhz", help="Lesson 6's corrupted prompt")
    parser.add_argument("--detectors-text", default="qhzbwmkqhzbwmk", help="the text Lesson 6's detector steps score")
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.folder)
    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    n = min(tokenizer.vocab_size, model.config.vocab_size)
    vocabulary = probe_vocabulary(checkpoint.training, tokenizer, model.config.block_size)
    scores = head_scores(model, tokenizer.encode(args.detectors_text), vocabulary=vocabulary)
    for detector in ("induction", "duplicate_token", "previous_token"):
        print(f"{detector:>16}: " + "  ".join(f"L{layer} " + " ".join(f"{s:.2f}" for s in row)
                                             for layer, row in enumerate(scores[detector].tolist())))
    induction = scores["induction"]
    layer, head = divmod(int(induction.argmax()), induction.shape[1])
    ids = tokenizer.encode(args.clean)
    lens = logit_lens(model, ids, n)
    last = len(ids) - 1
    answer = int(lens.final_ids[last])
    print(f"after {args.clean!r} the model says {tokenizer.decode([answer])!r}; probability of it after each row: "
          + ", ".join(f"{row} {p:.2f}" for row, p in zip(lens.rows, lens.final_probs[:, last])))
    settles = lens.rows[lens.settles_at()[last]]
    print(f"induction head: layer {layer} head {head}; the lens reads the answer from {settles} on "
          f"({'the same block' if settles == f'block {layer}' else 'NOT the same block'})")
    top = direct_attribution(model, ids, last, answer).top_heads(1)[0]
    print(f"strongest direct push on {tokenizer.decode([answer])!r}: L{top[0]} H{top[1]} {top[2]:+.2f}")
    found = activation_patching(model, ids, tokenizer.encode(args.corrupted), n)
    print("share of the clean answer brought back by patching each head: "
          + ", ".join(f"L{l} H{h} {found.heads[l, h]:.2f}" for l in range(found.heads.shape[0])
                      for h in range(found.heads.shape[1])))


if __name__ == "__main__":
    main()
