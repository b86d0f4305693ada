"""The settings of a fine-tuning run, one field per `python -m lm finetune` flag. Fields left
None take the method's default (METHOD_DEFAULTS), or its data's where that differs
(DATA_DEFAULTS), which suit the demo model on a CPU."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from lm.finetune.lora import check_targets
from lm.model import from_known_fields
from lm.train_config import option

METHODS = ("continue", "classify", "instruct", "dpo")
LORA_SAVES = ("merge", "adapter")

METHOD_DEFAULTS = {
    "continue": dict(data="tinyshakespeare", lr=3e-4, max_steps=200, batch_size=8),
    "classify": dict(data="sms-spam", lr=1e-3, max_steps=300, batch_size=16),
    # Instructions written by people (the Alpaca-style set, an upload): about 3 epochs of the 1,100
    # examples at Raschka's batch of 8, at a learning rate that adjusts a model rather than retrains it.
    "instruct": dict(data="synthetic", lr=3e-4, max_steps=300, batch_size=8),
    "dpo": dict(data="preferences", lr=1e-4, max_steps=100, batch_size=8),
}
DATA_DEFAULTS = {  # (method, data): settings of data that needs other ones than its method's
    # The synthetic puzzles are a new skill for the demo model, not an adjustment: a high rate,
    # many steps and no dropout: held-out exact match 0% -> 91-100% with seeds 1337, 1, 2 and 3
    # (lm.finetune.synthetic says why; benchmarks/finetune.py measures it).
    ("instruct", "synthetic"): dict(lr=3e-3, max_steps=1500, batch_size=16, dropout=0.0),
}

SEEDS = 2**31  # seeds are 0 .. 2**31 - 1, as the Fine-tune page offers
POSITIVE = (lambda v: 0 < v < math.inf, "a positive number")
FRACTION_BELOW_1 = (lambda v: 0 <= v < 1, "a number from 0 up to (not including) 1")
# The numbers a flag may hold (argparse takes nan and inf as floats): each one's test, and its words.
NUMBERS = {
    "lr": POSITIVE, "beta": POSITIVE, "beta1": FRACTION_BELOW_1, "beta2": FRACTION_BELOW_1,
    "min_lr_ratio": (lambda v: 0 <= v <= 1, "a number from 0 to 1"),
    "weight_decay": (lambda v: 0 <= v < math.inf, "a number, 0 or more"),
    "grad_clip": (lambda v: 0 <= v < math.inf, "a number, 0 or more (0: no clipping)"),
}


def check_number(name: str, value, rule) -> None:
    fits, words = rule
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not fits(value):
        raise ValueError(f"{name.replace('_', '-')} must be {words}, not {value!r}")


def defaults(method: str, data: str | None = None) -> dict:
    """The settings `method` starts from on `data` (None: the method's own data; "" or a file: its general ones)."""
    own = METHOD_DEFAULTS[method]
    return {**own, **DATA_DEFAULTS.get((method, own["data"] if data is None else data), {})}


@dataclass
class FinetuneConfig:
    method: str = option("classify", f"what to fine-tune for: {', '.join(METHODS)}")
    source: str = option("", "the checkpoint folder to start from")
    out: str = option("runs/finetune", "the run folder to write (and to resume from)")
    data: str | None = option(None, "a registered data set (sms-spam, instructions, preferences), synthetic, a corpus "
                              "name or text file (continue), or a CSV/TSV/JSON/JSONL file of your own")
    max_steps: int | None = option(None, "optimizer steps")
    lr: float | None = option(None, "peak learning rate (fine-tuning wants a lower one than pretraining)")
    batch_size: int | None = option(None, "examples per step")
    dropout: float | None = option(None, "dropout while fine-tuning (default: the checkpoint's own; 0: none)")
    eval_interval: int = option(50, "steps between evaluations and checkpoints")
    log_every: int = option(10, "steps between lines in metrics.jsonl")
    eval_batches: int = option(10, "batches (or windows) averaged for each validation loss")
    seed: int = option(1337, "seeds the split, the new head and the batches")
    device: str = option("auto", "auto, cpu, cuda, cuda:1, mps")
    threads: int = option(0, "CPU threads for PyTorch (0: its default)")
    trainable_blocks: int | None = option(None, "train only the last N blocks and the final norm (and a new head)")
    lora_rank: int = option(0, "LoRA rank (0: no LoRA, every parameter may train)")
    lora_alpha: float | None = option(None, "LoRA alpha: the update is scaled by alpha / rank (default 2 x rank)")
    lora_targets: str = option("attn,mlp", "the layers LoRA adapts: attn (each block's query-key-value and output "
                                "matrices), mlp (each block's two layers; in a mixture of experts every expert's two, "
                                "not the router), or names: attn.c_attn, mlp.c_fc (every expert's), mlp.router, "
                                "mlp.experts.0.c_fc (expert 0's alone), h.0.attn (block 0's alone)")
    lora_save: str = option("merge", "merge: the adapter folded into ordinary weights; adapter: also keep it apart "
                            "(adapter.safetensors)")
    beta: float = option(0.1, "DPO: how far from the reference model the preferences may pull (higher: less far)")
    min_lr_ratio: float = option(0.1, "the cosine schedule ends at lr x this")
    warmup_steps: int = option(10, "steps of linear warmup")
    weight_decay: float = option(0.1, "AdamW weight decay on weight matrices")
    beta1: float = option(0.9, "AdamW beta1")
    beta2: float = option(0.99, "AdamW beta2")
    grad_clip: float = option(1.0, "clip the gradient norm to this (0: no clipping)")

    @property
    def min_lr(self) -> float:  # lm.trainer.learning_rate reads it
        return self.lr * self.min_lr_ratio

    @property
    def lora(self) -> dict | None:
        return None if not self.lora_rank else {"rank": self.lora_rank, "alpha": self.lora_alpha,
                                                "targets": list(check_targets(self.lora_targets)), "save": self.lora_save}

    def resolved(self) -> FinetuneConfig:
        """The method's defaults for the fields left None, then checked."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        chosen = {k: v for k, v in defaults(self.method, self.data).items() if getattr(self, k) is None}
        if self.lora_rank and self.lora_alpha is None:
            chosen["lora_alpha"] = 2.0 * self.lora_rank
        return FinetuneConfig(**{**asdict(self), **chosen}).check()

    def check(self) -> FinetuneConfig:
        if not self.source:
            raise ValueError("--from names the checkpoint to start from")
        at_least = {"max_steps": 1, "batch_size": 1, "eval_interval": 1, "log_every": 1, "eval_batches": 1,
                    "threads": 0, "lora_rank": 0, "warmup_steps": 0, "seed": 0,
                    **({} if self.trainable_blocks is None else {"trainable_blocks": 0})}
        for name, low in at_least.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name.replace('_', '-')} must be a whole number of at least {low}, not {value!r}")
        if self.seed >= SEEDS:
            raise ValueError(f"seed must be a whole number from 0 to {SEEDS - 1}, not {self.seed!r}")
        for name, rule in NUMBERS.items():
            check_number(name, getattr(self, name), rule)
        if self.trainable_blocks is not None and self.lora_rank:
            raise ValueError("choose --trainable-blocks or LoRA (--lora-rank), not both: each decides what trains")
        if self.lora_save not in LORA_SAVES:
            raise ValueError(f"lora-save must be {' or '.join(LORA_SAVES)}, not {self.lora_save!r}")
        if self.lora_rank:
            check_number("lora_alpha", self.lora_alpha, POSITIVE)
        if self.dropout is not None:
            check_number("dropout", self.dropout, FRACTION_BELOW_1)
        self.lora  # checks the targets
        return self

    @classmethod
    def from_dict(cls, data: dict) -> FinetuneConfig:
        return from_known_fields(cls, data, "fine-tuning options")


def option_fields():
    """The fields that are command-line flags (all but method, which is the subcommand)."""
    return [f for f in fields(FinetuneConfig) if f.name != "method"]
