"""A synthetic instruction set the project generates, with answers that can be checked exactly:

    Reverse the letters.            q-h-z  ->  z-h-q
    Write the letters in capitals.  q-h-z  ->  Q-H-Z
    Copy the letters.               q-h-z  ->  q-h-z
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

Copying's instruction begins with a word of its own ("Copy"; "Repeat" began with Reverse's
first token, R): with it, seed 2 went from 68% to 100% held-out exact match at the defaults.
Seed 1 still ends near 60%: copying and reversing both miss, their third answer letter
repeating the answer's first (w-d-e reversed as e-d-e, q-b-c copied as q-b-q) while the first
two are right. Neither twice the share of those two operations (seed 1 49%, seed 2 60%) nor a
150-step warmup (seed 1 78%, seed 2 65%) brought every seed to 100%."""

from __future__ import annotations

import random
import string

from lm.finetune.prompts import Example

SYNTHETIC = "synthetic"
SIZE = 4000  # 3,400 to train on: a few epochs at the default settings, so it generalizes rather than memorizes
LENGTH = 3  # letters per input

OPERATIONS = {  # name: (instruction, answer)
    "reverse": ("Reverse the letters.", lambda letters: letters[::-1]),
    "uppercase": ("Write the letters in capitals.", lambda letters: [c.upper() for c in letters]),
    "repeat": ("Copy the letters.", lambda letters: letters),
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
