"""A synthetic instruction set the project generates, with answers that can be checked exactly:

    Reverse the letters.            q-h-z-b  ->  b-z-h-q
    Write the letters in capitals.  q-h-z    ->  Q-H-Z
    Repeat the letters.             q-h-z    ->  q-h-z
    Give the first letter.          q-h-z-b  ->  q
    Give the last letter.           q-h-z    ->  z

The letters are the example's input, joined by hyphens, so each is a token of its own, the
same token in the input and in the answer (written together, a subword vocabulary would hide
the letters from the model; spaced, " x" and "x" are different tokens, or " x" is two).
Before fine-tuning a model answers almost none; after, most held-out prompts, so exact
match measures what instruction tuning taught."""

from __future__ import annotations

import random
import string

from lm.finetune.prompts import Example

SYNTHETIC = "synthetic"
SIZE = 1100  # as many as the Alpaca-style set
LENGTHS = range(3, 7)

OPERATIONS = {  # name: (instruction, answer)
    "reverse": ("Reverse the letters.", lambda letters: letters[::-1]),
    "uppercase": ("Write the letters in capitals.", lambda letters: [c.upper() for c in letters]),
    "repeat": ("Repeat the letters.", lambda letters: letters),
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
        letters = rng.choices(string.ascii_lowercase, k=rng.choice(LENGTHS))
        if (instruction, tuple(letters)) not in seen:
            seen.add((instruction, tuple(letters)))
            examples.append(Example(instruction, "-".join(letters), "-".join(answer(letters))))
    return examples


def operation(example: Example) -> str:
    """Which operation a synthetic example asks for."""
    return BY_INSTRUCTION[example.instruction]
