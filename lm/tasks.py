"""Synthetic tasks: small puzzles generated on the fly (no download), whose attention can be read.

Every example is a line of text, one token per character: a prompt, the answer, then
<|endoftext|> (| marks where the prompt ends; it is not in the text):

    copy      xqhzbwq|hzbw       a random string, then one of its letters again: go on from there
    reverse   qhzbw=|wbzhq
    sort      qhzbw=|bhqwz
    brackets  (()())=|yes

Copy is the classic induction-head probe: the model sees the string and one of its letters
again, and only a head that finds where that letter came before and copies what came next
can go on. The repeat starts at a random letter, so where the answer lies cannot be read off
the positions: with "qhzbw=qhzbw", or a repeat always from the first letter, a small model
learns to copy by position instead, and no induction head need form. Its preset has one head
per layer: with two, runs here often solved it another way (a layer-0 head finding the earlier
copy, a layer-1 head reading two letters on) and scored at most about 0.5 on the induction
probe; with one, the layer-1 head becomes the induction head that Lesson 4 opens.

The loss is taken on the answer and the end-of-text token only. The prompt is random, so
predicting it teaches nothing and would only add noise to the loss (its floor would be
ln(alphabet), not 0); masked, the loss falls to 0 exactly when the task is solved.

Exact match of the greedy answer is measured without generating: greedy decoding rebuilds
the answer if and only if, fed the true answer so far, the most likely next token is the
true one at every answer position (and at <|endoftext|>). So one forward pass over the
held-out examples gives both the validation loss and the task accuracy.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Callable

import torch

from lm.generate import Sampling, generate
from lm.model import GPT
from lm.tokenizer import ENDOFTEXT, BPETokenizer

TASK_PREFIX = "task:"
HELD_OUT = 200  # examples for the validation loss and the accuracy, the same at every evaluation
HELD_OUT_SEED = 1_000_003  # one fixed held-out set per task, whatever the run's seed
LETTERS = string.ascii_lowercase


class TaskError(ValueError):
    """An unknown task, or settings a task cannot run with; the message says which."""


@dataclass(frozen=True)
class Task:
    name: str
    description: str  # one line, for the app and `--help`
    make_prompt: Callable[[torch.Generator], str]
    solve: Callable[[str], str]  # the answer to a prompt
    context: int  # tokens the longest example feeds the model (its length less the last token)
    preset: dict  # TrainConfig fields that learn it to >= 95% exact match in about two minutes on a CPU

    def example(self, generator: torch.Generator) -> tuple[str, str]:
        prompt = self.make_prompt(generator)
        return prompt, self.solve(prompt)


def _uniform(low: int, high: int, generator: torch.Generator) -> int:
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _letters(low: int, high: int) -> Callable[[torch.Generator], str]:
    """A prompt of low..high distinct random letters then "=" (distinct: each letter's
    position is unambiguous, so each answer token has one right place to look)."""

    def make(generator: torch.Generator) -> str:
        order = torch.randperm(len(LETTERS), generator=generator)[: _uniform(low, high, generator)]
        return "".join(LETTERS[i] for i in order.tolist()) + "="

    return make


def _repeat_somewhere(low: int, high: int) -> Callable[[torch.Generator], str]:
    """low..high distinct random letters, then one of them again (any but the last, so at
    least one letter follows it): the repeat begins there. (Its draws come in this order, length
    first: the preset's induction head was timed on this stream.)"""

    def make(generator: torch.Generator) -> str:
        n = _uniform(low, high, generator)
        letters = "".join(LETTERS[i] for i in torch.randperm(len(LETTERS), generator=generator)[:n].tolist())
        return letters + letters[_uniform(0, n - 2, generator)]

    return make


def _go_on(prompt: str) -> str:
    """The letters that followed the prompt's last letter where it came before."""
    return prompt[prompt.index(prompt[-1]) + 1 : -1]


def is_balanced(brackets: str) -> bool:
    """Every ( closed by a later ), and every ) closing an earlier (."""
    depth = 0
    for c in brackets:
        depth += 1 if c == "(" else -1
        if depth < 0:
            return False
    return depth == 0


def _brackets_prompt(generator: torch.Generator, max_pairs: int = 6) -> str:
    """Half balanced, half not; the unbalanced ones mostly have as many ( as ), so counting
    is not enough: a ) must never come before its (."""
    pairs = _uniform(1, max_pairs, generator)
    want_balanced = _uniform(0, 1, generator) == 1
    while True:
        if want_balanced or _uniform(0, 3, generator):  # equal counts, shuffled
            chars = torch.randperm(2 * pairs, generator=generator).lt(pairs).tolist()
        else:  # any string of that length
            chars = torch.randint(0, 2, (2 * pairs,), generator=generator).bool().tolist()
        text = "".join("(" if c else ")" for c in chars)
        if is_balanced(text) == want_balanced:
            return text + "="


def _preset(seed: int = 0, **options) -> dict:
    """TrainConfig fields. The seed is part of it: how long the loss stays flat before a task
    "clicks" varies from seed to seed, and the presets were timed with this one. One CPU thread:
    models this small train several times slower on two (the threads wait for each other)."""
    return dict(
        tokenizer="characters", dropout=0.0, weight_decay=0.1, min_lr=options["lr"] / 10, log_every=10,
        sample_every=options["eval_every"], seed=seed, threads=1, **options,
    )


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "copy", "Go on repeating a random string of letters from where a letter comes again: the induction task (xqhzbw q → hzbw).",
            _repeat_somewhere(4, 8), _go_on, context=16,
            # seed 1 in fp32: the layer-1 head passes 0.7 on the induction probe by step 4500 (0.78 at the end);
            # from seed 0 it stayed at 0.22 in fp32, and at 0.08 by step 3400 in bf16 (--precision auto on CPUs
            # that have it): when the head forms is that sensitive, so tests/test_tasks.py checks this one
            preset=_preset(1, n_layer=2, n_head=1, n_embd=64, block_size=16, batch_size=64, max_steps=6000, lr=3e-3,
                           warmup_steps=50, eval_every=100, snapshot_every=100, precision="fp32"),
        ),
        Task(
            "reverse", "Write a random string of letters backwards (qhzbw=wbzhq).",
            _letters(3, 12), lambda p: p[-2::-1], context=25,
            preset=_preset(n_layer=2, n_head=4, n_embd=64, block_size=32, batch_size=64, max_steps=4000, lr=3e-3,
                           warmup_steps=50, eval_every=100, snapshot_every=100),
        ),
        Task(
            "sort", "Sort random letters into alphabetical order (qhzbw=bhqwz).",
            _letters(3, 12), lambda p: "".join(sorted(p[:-1])), context=25,
            preset=_preset(n_layer=2, n_head=4, n_embd=64, block_size=32, batch_size=64, max_steps=600, lr=3e-3,
                           warmup_steps=50, eval_every=50, snapshot_every=25),
        ),
        Task(
            "brackets", "Say whether brackets are balanced, each ( closed by a later ): (()())=yes, ())(=no.",
            _brackets_prompt, lambda p: "yes" if is_balanced(p[:-1]) else "no", context=16,
            preset=_preset(n_layer=2, n_head=4, n_embd=64, block_size=16, batch_size=64, max_steps=500, lr=3e-3,
                           warmup_steps=50, eval_every=50, snapshot_every=25),
        ),
    )
}


def find_task(data: str) -> Task | None:
    """The task a TrainConfig.data of "task:NAME" names; None for a corpus or a file."""
    if not data.startswith(TASK_PREFIX):
        return None
    name = data[len(TASK_PREFIX) :]
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; known: {', '.join(TASK_PREFIX + n for n in TASKS)}")
    return TASKS[name]


def check_context(task: Task, block_size: int) -> None:
    if block_size < task.context:
        raise TaskError(f"the {task.name} task needs a context of at least {task.context} tokens, not {block_size}")


def trained_task(training: dict) -> Task | None:
    """The task a checkpoint learned, from its `training` record; None for a text (or a task
    this version does not know)."""
    data = (training.get("config") or {}).get("data")
    try:
        return find_task(data) if isinstance(data, str) else None
    except TaskError:
        return None


def probe_vocabulary(training: dict, tokenizer, block_size: int) -> list[int] | None:
    """The symbols a checkpoint's task is made of, for the induction probe: a model that only
    ever saw letters is probed with letters. None (the whole vocabulary) for a text."""
    task = trained_task(training)
    try:
        return TaskData(task, tokenizer, block_size).vocabulary if task else None
    except TaskError:  # a context too short for the task: probe with the whole vocabulary
        return None


def prompt_length(task: Task, text: str) -> int | None:
    """How many characters of `text` are the task's prompt, the rest being the answer the task
    trains (and is scored on): up to "=", or for copy up to the first letter that comes again.
    None when the text has no answer part."""
    if task.name == "copy":
        end = next((i + 1 for i, c in enumerate(text) if c in text[:i]), None)
    else:
        end = text.index("=") + 1 if "=" in text else None
    return end if end is not None and end < len(text) else None


def task_tokenizer() -> BPETokenizer:
    """One token per byte (a BPE with no merges), so every character is its own token."""
    return BPETokenizer([], special_tokens=(ENDOFTEXT,), name="characters")


class TaskData:
    """A task's training batches (drawn from the caller's generator, so a resumed run continues
    the same stream) and its fixed held-out examples, which training never draws."""

    def __init__(self, task: Task, tokenizer: BPETokenizer, block_size: int, held_out: int = HELD_OUT):
        check_context(task, block_size)
        self.task, self.tokenizer = task, tokenizer
        self.end_id = tokenizer.special_tokens[ENDOFTEXT]
        generator = torch.Generator().manual_seed(HELD_OUT_SEED)
        self.held_out = [task.example(generator) for _ in range(held_out)]
        self.held_out_prompts = {prompt for prompt, _ in self.held_out}
        self.held_out_batch = self.collate(self.held_out)
        # the symbols prompts are made of (less their last token, = or the repeated letter):
        # the induction detector draws its random probe from them
        self.vocabulary = sorted({i for prompt, _ in self.held_out for i in tokenizer.encode(prompt[:-1])})

    def training_examples(self, n: int, generator: torch.Generator) -> list[tuple[str, str]]:
        examples = []
        while len(examples) < n:
            prompt, answer = self.task.example(generator)
            if prompt not in self.held_out_prompts:
                examples.append((prompt, answer))
        return examples

    def batch(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.collate(self.training_examples(batch_size, generator))

    def collate(self, examples: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (each example from position 0, padded with <|endoftext|> to the longest) and
        targets: the next token where it is part of the answer or its final <|endoftext|>,
        -1 (ignored by the loss) elsewhere."""
        encoded = [(self.tokenizer.encode(p + a) + [self.end_id], len(self.tokenizer.encode(p))) for p, a in examples]
        T = max(len(ids) for ids, _ in encoded) - 1
        x = torch.full((len(encoded), T), self.end_id, dtype=torch.long)
        y = torch.full((len(encoded), T), -1, dtype=torch.long)
        for row, (ids, n_prompt) in enumerate(encoded):
            x[row, : len(ids) - 1] = torch.tensor(ids[:-1])
            y[row, n_prompt - 1 : len(ids) - 1] = torch.tensor(ids[n_prompt:])
        return x, y

    @torch.no_grad()
    def evaluate(self, model: GPT, device: str = "cpu") -> tuple[float, float]:
        """(validation loss on the answers, exact-match accuracy) on the held-out examples."""
        model.eval()
        x, y = (t.to(device) for t in self.held_out_batch)
        out = model(x, y)
        right = exact_matches(out.logits, y, self.tokenizer.vocab_size)
        return out.loss.item(), right.sum().item() / len(right)

    def probe(self) -> list[int]:
        """One held-out example (the longest of the first few, answer and all) as ids, to watch attention on."""
        prompt, answer = max(self.held_out[:20], key=lambda example: len(example[0]) + len(example[1]))
        return self.tokenizer.encode(prompt + answer)

    def show_answers(self, model: GPT, n: int = 5) -> str:
        """The model's greedy answers to the first `n` held-out prompts, marked right or wrong."""
        lines = []
        for prompt, answer in self.held_out[:n]:
            settings = Sampling(temperature=0, max_new_tokens=len(answer) + 1)
            steps = generate(model, self.tokenizer, self.tokenizer.encode(prompt), settings)
            produced = "".join(step.text for step in steps if step.token_id != self.end_id)
            lines.append(f"{prompt}{produced}   " + ("✓" if produced == answer else f"✗ (right: {answer})"))
        return "\n".join(lines)


def exact_matches(logits: torch.Tensor, targets: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Per example, whether the most likely token (among the tokenizer's `n_tokens`: a padded
    vocabulary's extra rows are no tokens) is the target at every position that has one."""
    right = (logits[..., :n_tokens].argmax(-1) == targets) | (targets == -1)
    return right.all(dim=-1)
