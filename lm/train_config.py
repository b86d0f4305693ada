"""The settings of a training run (TrainConfig), one field per `python -m lm train` flag,
each with its help; and the model's vocabulary as training builds it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from lm.architectures import ARCH_FIELDS, model_switches
from lm.config import MLPS, NORM_POSITIONS, NORMS, POSITIONS
from lm.device import PRECISIONS
from lm.model import GPTConfig, from_known_fields
from lm.tasks import TASKS, check_context, find_task


def option(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    out: str = option("runs/run", "run folder to write (and to resume from)")
    data: str = option(
        "tinyshakespeare",
        "a corpus name (tinyshakespeare), a path to a UTF-8 text file, or a synthetic task generated on the fly: "
        + ", ".join(f"task:{name}" for name in TASKS) + " (one token per character; `python -m lm train` starts from the "
        "task's own preset, which other flags override)",
    )
    tokenizer: str = option(
        "bpe:1024",
        "bpe:N trains the project's BPE with N tokens on the data; r50k_base (GPT-2), cl100k_base, o200k_base; "
        "or a saved tokenizer .json",
    )
    val_fraction: float = option(0.1, "share of the text (its end) held out to measure validation loss")
    n_layer: int = option(4, "transformer blocks")
    n_head: int = option(4, "attention heads per block")
    n_embd: int = option(128, "embedding width (divisible by n_head)")
    block_size: int = option(128, "context length in tokens")
    dropout: float = option(0.0, "dropout probability (0 for short runs; 0.1-0.2 against overfitting)")
    bias: bool = option(True, "biases in linear layers and layer norms, as GPT-2")
    # --- the architecture dial (lm.config; presets in lm.architectures; defaults: GPT-2) ---
    position: str = option("learned", "; ".join(f"{k}: {v}" for k, v in POSITIONS.items()))
    rope_base: float = option(10000.0, "rotary: the base of its frequencies (Llama 10000, Qwen3 1000000)")
    rotary_fraction: float = option(1.0, "rotary: the share of each head's dimensions rotated (Pythia 0.25)")
    rope_local_base: float = option(0.0, "rotary: the base in windowed layers (Gemma 3 10000, others 1000000); "
                                         "0: rope_base everywhere")
    norm: str = option("layernorm", "; ".join(f"{k}: {v}" for k, v in NORMS.items()))
    norm_position: str = option("pre", "; ".join(f"{k}: {v}" for k, v in NORM_POSITIONS.items()))
    qk_norm: bool = option(False, "RMSNorm each head's queries and keys before scoring (Qwen3, OLMo 2)")
    mlp: str = option("gelu", "; ".join(f"{k}: {v}" for k, v in MLPS.items()))
    mlp_hidden: int = option(0, "the MLP's width; 0: 4 x n_embd, or with swiglu/geglu 8/3 x n_embd (GPT-2's parameter count)")
    n_kv_head: int = option(0, "key/value heads, each shared by a group of query heads; 0: n_head (MHA), 1: MQA")
    window: int = option(0, "sliding window: a query sees itself and the window - 1 tokens before it; 0: the whole context")
    window_layers: str = option("", "the layers that use the window, as 0,2; empty: every layer")
    parallel_residual: bool = option(False, "attention and MLP side by side from one norm, x + attn + mlp (Pythia, GPT-J)")
    tied_head: bool = option(True, "the output head is the token embedding, as GPT-2 (--no-tied-head: its own matrix)")
    scale_embeddings: bool = option(False, "token embeddings x sqrt(n_embd) on the way in, as Gemma")
    n_experts: int = option(0, "mixture of experts: each MLP becomes this many, a router picks experts_top_k per token "
                               "(Mixtral 8); 0: one dense MLP")
    experts_top_k: int = option(2, "mixture of experts: the experts each token goes through (Mixtral 2)")
    moe_aux_weight: float = option(0.01, "mixture of experts: the load-balancing loss's weight in the training loss")
    batch_size: int = option(
        16, "sequences per micro-batch, in each process: under torchrun a step sees batch_size x processes"
    )
    grad_accum: int = option(1, "micro-batches per optimizer step (a larger batch without more memory)")
    max_steps: int = option(2000, "optimizer steps to train for")
    lr: float = option(1e-3, "peak learning rate")
    min_lr: float = option(1e-4, "learning rate at the end of the cosine decay")
    warmup_steps: int = option(100, "steps of linear warmup from 0 to lr")
    weight_decay: float = option(0.1, "AdamW weight decay, on weight matrices only")
    beta1: float = option(0.9, "AdamW beta1")
    beta2: float = option(0.99, "AdamW beta2")
    grad_clip: float = option(1.0, "clip the gradient norm to this (0: no clipping)")
    log_every: int = option(10, "steps between lines in metrics.jsonl")
    eval_every: int = option(100, "steps between validation-loss measurements and checkpoints")
    eval_batches: int = option(20, "batches averaged for each validation loss")
    sample_every: int = option(200, "steps between generated samples (0: never)")
    sample_tokens: int = option(100, "tokens per sample")
    snapshot_every: int = option(
        100, "steps between attention snapshots of a fixed probe (attention/, detectors.jsonl), from step 0 (0: never)"
    )
    seed: int = option(1337, "random seed: the same seed gives the same initialisation and batches")
    device: str = option("auto", "auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:1, mps")
    threads: int = option(0, "CPU threads for PyTorch (0: its default), in each process")
    precision: str = option(
        "auto", "auto (bf16 on a GPU that has it, else fp16 with a gradient scaler; fp32 on CPU and MPS), fp32, bf16, fp16"
    )
    compile: bool = option(False, "compile the model with torch.compile: faster steps on a GPU, after a slow first one")

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(
            vocab_size=vocab_size, block_size=self.block_size, n_layer=self.n_layer, n_head=self.n_head,
            n_embd=self.n_embd, dropout=self.dropout,
            **model_switches({name: getattr(self, name) for name in ARCH_FIELDS}, self.n_embd, self.n_layer),
        )

    def check(self) -> "TrainConfig":
        """Refuse, naming the field, what would fail later (after minutes of preparation) or
        silently train nonsense; a config file may hold "16" where 16 is meant."""
        for f in fields(self):
            value, kind = getattr(self, f.name), type(f.default)
            ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
            if not ok or (kind is not bool and isinstance(value, bool)):
                raise ValueError(f"{f.name} must be a {kind.__name__}, not {value!r}")
        at_least = {
            "batch_size": 1, "grad_accum": 1, "max_steps": 1, "log_every": 1, "eval_every": 1, "eval_batches": 1,
            "warmup_steps": 0, "sample_every": 0, "sample_tokens": 1, "threads": 0, "weight_decay": 0, "grad_clip": 0,
            "snapshot_every": 0, "mlp_hidden": 0, "n_kv_head": 0, "window": 0,
            "n_experts": 0, "experts_top_k": 1, "moe_aux_weight": 0,
        }
        for name, low in at_least.items():
            if not getattr(self, name) >= low:
                raise ValueError(f"{name} must be at least {low}, not {getattr(self, name)}")
        for name in ("val_fraction", "beta1", "beta2"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must be between 0 and 1, not {getattr(self, name)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if not (0 < self.lr < math.inf and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"need 0 <= min_lr <= lr and lr > 0 (got lr={self.lr}, min_lr={self.min_lr})")
        self.model_config(vocab_size=1).validate()
        task = find_task(self.data)
        if task is not None:
            check_context(task, self.block_size)
        return self

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return from_known_fields(cls, data, "training options")


def padded_vocab_size(vocab_size: int) -> int:
    """The model's vocabulary for a tokenizer's: rounded up to a multiple of 64, which multiplies faster."""
    return -(-vocab_size // 64) * 64
