"""Instruction tuning (supervised fine-tuning): prompts in the Alpaca template, the loss on the
response tokens only (lm.finetune.prompts.response_mask), batches of similar lengths (but
the synthetic set's are shuffled: its lengths differ only by operation, so batches of similar
length would each hold one operation and pull the model to one answer after another, where
mixed batches teach it to read the instruction).

Exact match is measured without generating: greedy decoding writes the expected response if
and only if, fed the expected response so far, the most likely next token is the expected
one at every response position and at <|endoftext|> (lm.tasks argues the same), so one
forward pass scores a batch. Held-out responses are also generated, to be read side by side."""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from lm.finetune.data import format_prompt, load_instructions, split_examples
from lm.finetune.methods import Method, step_generator
from lm.finetune.prompts import length_batches, pad_batch, response_mask
from lm.finetune.synthetic import SYNTHETIC, operation
from lm.generate import Sampling, end_of_text_id, generate

SHOWN = 5  # held-out examples generated for evaluation.json
MAX_RESPONSE_TOKENS = 64
EVAL_BATCH = 32


def respond(model, tokenizer, prompt: str, max_new_tokens: int = MAX_RESPONSE_TOKENS) -> str:
    """The model's greedy response to a prompt, up to <|endoftext|>."""
    end = end_of_text_id(tokenizer)
    pieces = []
    settings = Sampling(temperature=0, max_new_tokens=max_new_tokens)
    for step in generate(model, tokenizer, tokenizer.encode(prompt), settings, explain=False):
        if step.token_id == end:
            break
        pieces.append(step.text)
    return "".join(pieces)


def generated_examples(model, tokenizer, examples, expected=lambda e: e.output) -> list[dict]:
    return [{"prompt": format_prompt(e), "expected": expected(e), "response": respond(model, tokenizer, format_prompt(e))}
            for e in examples[:SHOWN]]


class Instruct(Method):
    def __init__(self, cfg, model, tokenizer):
        super().__init__(cfg, model, tokenizer)
        self.splits = split_examples(load_instructions(cfg.data, progress=True, seed=cfg.seed), cfg.seed)
        self.encoded = {name: [response_mask(tokenizer, e, block_size=self.block_size) for e in part]
                        for name, part in self.splits.items()}
        self.pad = end_of_text_id(tokenizer)
        self.by_length = cfg.data != SYNTHETIC
        self.epoch, self.plan = None, []

    def _rows(self, step: int) -> list[int]:
        """Step's batch: epochs of batches (length-sorted, or shuffled), each epoch's order drawn from the seed."""
        lengths = [len(ids) for ids, _ in self.encoded["train"]]
        size = self.cfg.batch_size * self.world.size  # the whole step's batch: each process takes its share
        epoch, index = divmod(step, math.ceil(len(lengths) / size))
        if epoch != self.epoch:
            generator = step_generator(self.cfg.seed, -2 - epoch)
            if self.by_length:
                self.plan = length_batches(lengths, size, generator)
            else:
                order = torch.randperm(len(lengths), generator=generator).tolist()
                self.plan = [order[i : i + size] for i in range(0, len(order), size)]
            self.epoch = epoch
        return self.plan[index]

    def batch_loss(self, step):
        rows = self._rows(step)
        if len(rows) >= self.world.size:  # smaller, the last batch of an epoch is trained whole by every process,
            rows = rows[self.world.rank :: self.world.size]  # so their averaged gradients are that batch's own
        x, y = pad_batch([self.encoded["train"][i] for i in rows], self.pad)
        return self.model(x.to(self.device), y.to(self.device)).loss, {}, x.numel()

    def _scores(self, split: str) -> tuple[float, list[bool]]:
        """Mean loss per response token over a split, and whether each example is an exact match."""
        total, count, exact = 0.0, 0, []
        pairs = self.encoded[split]
        for start in range(0, len(pairs), EVAL_BATCH):
            x, y = (t.to(self.device) for t in pad_batch(pairs[start : start + EVAL_BATCH], self.pad))
            logits = self.model(x).logits
            counted = y != -1
            total += torch.nn.functional.cross_entropy(logits[counted], y[counted], reduction="sum").item()
            count += int(counted.sum())
            exact += ((logits.argmax(-1) == y) | ~counted).all(-1).tolist()
        return total / count, exact

    def evaluate(self):
        loss, exact = self._scores("val")
        return {"val_loss": loss, "val_exact_match": sum(exact) / len(exact)}

    def report(self):
        _, exact = self._scores("test")
        report = {"examples": generated_examples(self.model, self.tokenizer, self.splits["test"]),
                  "exact_match": sum(exact) / len(exact), "n": len(exact)}
        if self.cfg.data == SYNTHETIC:
            by_operation = defaultdict(list)
            for example, hit in zip(self.splits["test"], exact):
                by_operation[operation(example)].append(hit)
            report["by_operation"] = {name: sum(hits) / len(hits) for name, hits in sorted(by_operation.items())}
        return report

    def sample(self):
        example = self.splits["val"][0]
        return format_prompt(example) + respond(self.model, self.tokenizer, format_prompt(example))
