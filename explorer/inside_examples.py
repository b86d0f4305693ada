"""What the Inside the model page reads: ready-made prompt pairs for a model (the copy task,
GPT-2's indirect-object sentence, a line of Shakespeare) and a corpus sample to find where
neurons fire. Plain values, no widgets."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lm.checkpoint import Checkpoint
from lm.data import CORPORA, DataError, is_cached, load_corpus
from lm.neurons import windows
from lm.tasks import trained_task
from lm.tokenizer import ENDOFTEXT

SAMPLE_CHARS = 200_000  # of a corpus: enough for the windows below, quick to encode
SAMPLE_WINDOWS = 24
SAMPLE_LENGTH = 64  # tokens a window; shorter for a smaller context
TASK_EXAMPLES = 48


@dataclass(frozen=True)
class Example:
    """A clean prompt, the corrupted one (one place changed) and, optionally, the two answers
    patching compares ("" = the model's own likeliest next token)."""

    clean: str
    corrupted: str
    clean_answer: str = ""
    corrupted_answer: str = ""


COPY = Example("qhzbwmkqhz", "qhzxwmkqhz")  # the repeat has reached z: b comes next, or x once b was changed
INDIRECT_OBJECT = Example(
    "When Mary and John went to the store, John gave a drink to",
    "When Mary and John went to the store, Mary gave a drink to", " Mary", " John",
)
# speak → pray: one token in the demo's BPE and in GPT-2's, and the demo goes on differently (".\n\n", "er")
SHAKESPEARE = Example("First Citizen:\nBefore we proceed any further, hear me speak",
                      "First Citizen:\nBefore we proceed any further, hear me pray")


def examples_for(checkpoint: Checkpoint) -> dict[str, Example]:
    """The examples that suit the model, the best first: the copy task for a model trained on it,
    the indirect-object sentence for one with GPT-2's tokenizer; a line of Shakespeare always."""
    found = {}
    task = trained_task(checkpoint.training)
    if task is not None and task.name == "copy":
        found["Copy task: which letter comes next?"] = COPY
    if getattr(checkpoint.tokenizer, "encoding_name", None) == "r50k_base":
        found["Indirect object: who gets the drink?"] = INDIRECT_OBJECT
    found["Shakespeare: one word changed"] = SHAKESPEARE
    return found


def corpus_sample(checkpoint: Checkpoint) -> tuple[str, list[list[int]]] | None:
    """(what it is, equal-length windows of ids) to index neurons on: a task's own examples for a
    task model, else its training corpus or Tiny Shakespeare when on this machine; None if none is."""
    tokenizer, block = checkpoint.tokenizer, checkpoint.model.config.block_size
    task = trained_task(checkpoint.training)
    if task is not None:
        generator = torch.Generator().manual_seed(0)
        end = tokenizer.special_tokens.get(ENDOFTEXT) if hasattr(tokenizer, "special_tokens") else None
        encoded = [tokenizer.encode("".join(task.example(generator)))[:block] for _ in range(TASK_EXAMPLES)]
        length = max(len(ids) for ids in encoded)
        pad = end if end is not None else encoded[0][0]
        return f"{TASK_EXAMPLES} examples of the {task.name} task", [ids + [pad] * (length - len(ids)) for ids in encoded]
    data = (checkpoint.training.get("config") or {}).get("data")
    for name in dict.fromkeys([data, "tinyshakespeare"]):
        corpus = CORPORA.get(name) if isinstance(name, str) else None
        if corpus is not None and is_cached(corpus):
            try:
                text = load_corpus(corpus)[:SAMPLE_CHARS]
            except DataError:
                continue
            length = min(block, SAMPLE_LENGTH)
            return (f"{SAMPLE_WINDOWS} passages of {length} tokens from {corpus.title}",
                    windows(tokenizer.encode(text), length, SAMPLE_WINDOWS))
    return None
