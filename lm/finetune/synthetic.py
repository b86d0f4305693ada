"""A synthetic instruction set the project generates, with answers that can be checked exactly:

    reverse: q h z b   ->  b z h q          uppercase: q h z   ->  Q H Z
    repeat: q h z      ->  q h z            first: q h z b     ->  q          last: q h z  ->  z

Letters are spaced so that each is a token of its own in any BPE (written together, a subword
vocabulary would hide them from the model). Before fine-tuning a model answers almost none;
after, most held-out prompts, so exact match measures what instruction tuning taught."""

from __future__ import annotations

import random
import string

from lm.finetune.prompts import Example

SYNTHETIC = "synthetic"
SIZE = 1100  # as many as the Alpaca-style set
LENGTHS = range(3, 7)

OPERATIONS = {
    "reverse": lambda letters: letters[::-1],
    "uppercase": lambda letters: [c.upper() for c in letters],
    "repeat": lambda letters: letters,
    "first": lambda letters: letters[:1],
    "last": lambda letters: letters[-1:],
}


def synthetic_examples(seed: int = 0, size: int = SIZE) -> list[Example]:
    """`size` distinct prompts, the operations taking turns, letters drawn with `seed`."""
    rng, seen, examples = random.Random(seed), set(), []
    names = list(OPERATIONS)
    while len(examples) < size:
        name = names[len(examples) % len(names)]
        letters = rng.choices(string.ascii_lowercase, k=rng.choice(LENGTHS))
        instruction = f"{name}: {' '.join(letters)}"
        if instruction not in seen:
            seen.add(instruction)
            examples.append(Example(instruction, "", " ".join(OPERATIONS[name](letters))))
    return examples


def operation(example: Example) -> str:
    """Which operation a synthetic example asks for (its instruction's first word)."""
    return example.instruction.split(":", 1)[0]
