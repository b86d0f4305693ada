"""Classification: a new output head reads the hidden state of a text's last token (the only
position that has seen the whole text, attention being causal) and scores each label.

Texts are cut to the context and padded on the right; padding comes after the last token, so
causal attention keeps it from changing what that token sees. The data is split, balanced and
seeded (lm.finetune.data.balanced_split): chance accuracy is 1 / labels."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open

from lm.checkpoint import CLASSIFIER, CONFIG_FILE, WEIGHTS_FILE, CheckpointError, load_checkpoint
from lm.finetune.data import balanced_split, load_classification
from lm.finetune.methods import Method, step_generator
from lm.generate import end_of_text_id
from lm.model import GPT
from lm.run_folder import read_record


class ClassifierHead(nn.Linear):
    """hidden state [.., n_embd] -> one score per label; `labels` names them (saved in config.json)."""

    def __init__(self, n_embd: int, labels):
        super().__init__(n_embd, len(labels))
        self.labels = tuple(labels)


def encode_texts(tokenizer, texts: list[str], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [B, T] (each text's first block_size tokens, padded on the right) and each one's length."""
    pad = end_of_text_id(tokenizer) or 0
    encoded = [tokenizer.encode(text)[:block_size] or [pad] for text in texts]
    lengths = torch.tensor([len(ids) for ids in encoded])
    x = torch.full((len(encoded), int(lengths.max())), pad, dtype=torch.long)
    for row, ids in enumerate(encoded):
        x[row, : len(ids)] = torch.tensor(ids)
    return x, lengths


def class_logits(model: GPT, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, labels]: the head on the final-norm output at each text's last token."""
    hidden, _, _ = model.hidden(x)
    return model.classifier(hidden[torch.arange(len(x)), lengths.to(hidden.device) - 1])


@torch.no_grad()
def predict(model: GPT, tokenizer, text: str) -> list[tuple[str, float]]:
    """Every label with its probability, the most likely first."""
    model.eval()
    x, lengths = encode_texts(tokenizer, [text], model.config.block_size)
    device = next(model.parameters()).device
    probs = class_logits(model, x.to(device), lengths).softmax(-1)[0].tolist()
    return sorted(zip(model.classifier.labels, probs), key=lambda pair: -pair[1])


def load_classifier(folder, device: str = "cpu"):
    """A classification checkpoint's GPT with its head attached, and its tokenizer."""
    checkpoint = load_checkpoint(folder)
    labels = ((read_record(checkpoint.path / CONFIG_FILE) or {}).get(CLASSIFIER) or {}).get("labels")
    if not (isinstance(labels, list) and len(labels) >= 2 and all(isinstance(l, str) for l in labels)):
        raise CheckpointError(f"{folder} has no classification head (config.json names no labels)")
    head = ClassifierHead(checkpoint.model.config.n_embd, labels)
    with safe_open(str(checkpoint.path / WEIGHTS_FILE), "pt") as f:
        try:
            head.load_state_dict({name: f.get_tensor(f"{CLASSIFIER}.{name}") for name in ("weight", "bias")})
        except Exception as exc:  # a missing or misshapen tensor
            raise CheckpointError(f"the classification head in {folder} cannot be loaded ({exc})") from None
    checkpoint.model.classifier = head
    return checkpoint.model.to(device).eval(), checkpoint.tokenizer


class Classify(Method):
    def __init__(self, cfg, model, tokenizer):
        super().__init__(cfg, model, tokenizer)
        splits = balanced_split(load_classification(cfg.data, progress=True), cfg.seed)
        self.labels = sorted({e.label for e in splits["train"]})
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.splits = {name: ([e.text for e in part], torch.tensor([self.index[e.label] for e in part]))
                       for name, part in splits.items()}
        model.classifier = ClassifierHead(model.config.n_embd, self.labels)

    def new_parameters(self):
        return list(self.model.classifier.parameters())

    def _logits(self, texts: list[str]) -> tuple[torch.Tensor, int]:
        x, lengths = encode_texts(self.tokenizer, texts, self.block_size)
        return class_logits(self.model, x.to(self.device), lengths), x.numel()

    def batch_loss(self, step):
        texts, labels = self.splits["train"]
        rows = self.own_share(lambda n: torch.randint(len(texts), (n,), generator=step_generator(self.cfg.seed, step)))
        logits, tokens = self._logits([texts[i] for i in rows])
        targets = labels[rows].to(self.device)
        accuracy = (logits.argmax(-1) == targets).float().mean().item()
        return F.cross_entropy(logits, targets), {"train_accuracy": accuracy}, tokens

    def _predictions(self, split: str) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(true labels, predicted labels, mean loss) over a whole split, in batches."""
        texts, labels = self.splits[split]
        predicted, loss = [], 0.0
        for start in range(0, len(texts), 64):
            logits, _ = self._logits(texts[start : start + 64])
            loss += F.cross_entropy(logits, labels[start : start + 64].to(self.device), reduction="sum").item()
            predicted.append(logits.argmax(-1).cpu())
        return labels, torch.cat(predicted), loss / len(texts)

    def evaluate(self):
        truth, predicted, loss = self._predictions("val")
        return {"val_loss": loss, "val_accuracy": (truth == predicted).float().mean().item()}

    def report(self):
        truth, predicted, _ = self._predictions("test")
        confusion = torch.zeros(len(self.labels), len(self.labels), dtype=torch.long)
        confusion.index_put_((truth, predicted), torch.ones_like(truth), accumulate=True)
        return {"split": "test", "accuracy": (truth == predicted).float().mean().item(), "labels": self.labels,
                "confusion": confusion.tolist(), "n": len(truth)}
