"""The Alpaca prompt template, and the token ids and loss mask of a prompt with its response.

The model reads the whole text but learns only the response: the loss mask is 1 on the
response tokens and the <|endoftext|> that ends it, 0 on the prompt (whose words the
user wrote; predicting them teaches nothing about answering)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lm.generate import end_of_text_id
from lm.tokenizer import ENDOFTEXT

ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}{input_block}\n\n### Response:\n"
)
INPUT_BLOCK = "\n\n### Input:\n{input}"


@dataclass(frozen=True)
class Example:
    instruction: str
    input: str
    output: str
    chosen: str | None = None  # preference data: the better answer
    rejected: str | None = None  # and the worse one


def format_prompt(example: Example) -> str:
    """The prompt the model sees before its response (the Input section only when there is one)."""
    block = INPUT_BLOCK.format(input=example.input) if example.input else ""
    return ALPACA_TEMPLATE.format(instruction=example.instruction, input_block=block)


def response_mask(tokenizer, example: Example, response: str | None = None, block_size: int | None = None):
    """(ids, mask) of the prompt, the response (default: the example's output) and <|endoftext|>;
    mask[i] is 1 where ids[i] is a response token the loss counts. Too long for `block_size + 1`
    ids (the inputs and the shifted targets), the start of the prompt is cut off."""
    end = end_of_text_id(tokenizer)
    if end is None:
        raise ValueError(f"the tokenizer {tokenizer.name} has no {ENDOFTEXT} token to end a response with")
    prompt = tokenizer.encode(format_prompt(example))
    answer = tokenizer.encode(example.output if response is None else response) + [end]
    ids, mask = prompt + answer, [0] * len(prompt) + [1] * len(answer)
    if block_size is not None:
        ids, mask = ids[-(block_size + 1):], mask[-(block_size + 1):]
    return ids, mask


def pad_batch(pairs: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs [B, T] padded on the right with pad_id, and targets [B, T]: the next token where
    the mask counts it, else -1 (ignored by the loss). T is the longest example's length less one."""
    width = max(len(ids) for ids, _ in pairs) - 1
    x = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    y = torch.full((len(pairs), width), -1, dtype=torch.long)
    for row, (ids, mask) in enumerate(pairs):
        n = len(ids) - 1
        x[row, :n] = torch.tensor(ids[:-1])
        y[row, :n] = torch.tensor([t if m else -1 for t, m in zip(ids[1:], mask[1:])])
    return x, y


def length_batches(lengths: list[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One epoch of index batches, examples of similar length together (little padding): shuffled,
    cut into pools of 16 batches, each pool sorted by length and cut into batches, batches shuffled."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    pool = 16 * batch_size
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lengths.__getitem__)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
