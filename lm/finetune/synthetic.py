"""A synthetic instruction set the project generates, with answers that can be checked exactly:

    Turn the letters around.        q-h-z  ->  z-h-q
    Write the letters in capitals.  q-h-z  ->  Q-H-Z
    Say the letters again.          q-h-z  ->  q-h-z
    Give the first letter.          q-h-z  ->  q
    Give the last letter.           q-h-z  ->  z

The letters are the example's input, joined by hyphens, so each is a token of its own, the
same token in the input and in the answer (written together, a subword vocabulary would hide
the letters from the model; spaced, " x" and "x" are different tokens, or " x" is two).
Every input has the same number of letters, so each answer letter sits a fixed distance from
the input letter it comes from: a 1M-parameter model then learns where to look within minutes,
while with lengths varying from 3 to 6 it was still guessing after 300 steps and scored 14%
after 600 (benchmarks/finetune.py). The held-out examples differ from the training ones only
in their letters. Before fine-tuning a model answers almost none; after, most, so exact match
measures what instruction tuning taught: to read the instruction and do what it says.

Copying and reversing answer with the same letters, so only the instruction tells the order,
and the words that tell it are whole-word tokens (" again"; " ar", "ound"), each instruction
with a first word of its own. Written "Copy" and "Reverse", the demo model's vocabulary spells
them C-o-p-y and R-e-ver-se: the telling tokens were the puzzles' own letter tokens, and with
seed 1 the model mixed the two up to the end (held-out exact match 64%: copying 8%, reversing
9%, every other operation 100%). The set also trains without dropout (lm.finetune.config;
Raschka fine-tunes with none too): a tiny model that must point at one input letter learns it
sooner when its attention is not dropped (seed 1 with the old words: 64% -> 82%). With both,
at the defaults (1500 steps, about 200 s of one CPU core), held-out exact match goes from 0%
to 100% with seeds 1337, 2 and 3 and 97.8% with seed 1 (benchmarks/finetune.py). Worded
"Write the letters again." / "... the other way round.", all sharing their first words, seed 1
reached only 90.8%, its "Give the first letter." learned last (62%)."""

from __future__ import annotations

import random
import string

from lm.finetune.prompts import Example

SYNTHETIC = "synthetic"
SIZE = 4000  # 3,400 to train on: a few epochs at the default settings, so it generalizes rather than memorizes
LENGTH = 3  # letters per input

OPERATIONS = {  # name: (instruction, answer)
    "reverse": ("Turn the letters around.", lambda letters: letters[::-1]),
    "uppercase": ("Write the letters in capitals.", lambda letters: [c.upper() for c in letters]),
    "repeat": ("Say the letters again.", lambda letters: letters),
    "first": ("Give the first letter.", lambda letters: letters[:1]),
    "last": ("Give the last letter.", lambda letters: letters[-1:]),
}
BY_INSTRUCTION = {instruction: name for name, (instruction, _) in OPERATIONS.items()}


def synthetic_examples(seed: int = 0, size: int = SIZE) -> list[Example]:
    """`size` distinct examples, the operations taking turns, letters drawn with `seed`."""
    rng, seen, examples = random.Random(seed), set(), []
    names = list(OPERATIONS)
    while len(examples) < size:
        instruction, answer = OPERATIONS[names[len(examples) % len(names)]]
        letters = rng.choices(string.ascii_lowercase, k=LENGTH)
        if (instruction, tuple(letters)) not in seen:
            seen.add((instruction, tuple(letters)))
            examples.append(Example(instruction, "-".join(letters), "-".join(answer(letters))))
    return examples


def operation(example: Example) -> str:
    """Which operation a synthetic example asks for."""
    return BY_INSTRUCTION[example.instruction]
