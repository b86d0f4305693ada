"""A training run planned once, before any process starts: from the settings a form or a
script chose to a complete TrainConfig (a task's or a size's preset under them), the text
it trains on, how many processes train it, the device resolved, and everything checked
that can be checked without training: what the trainer itself refuses, a model too big for
the device's memory, a text too short for the context. The run manager starts a plan as it is."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from lm.data import DataError, split_tokens
from lm.device import resolve_device
from lm.model import ConfigError, GPTConfig
from lm.sizing import physical_memory_bytes, training_memory_bytes
from lm.tasks import find_task, task_tokenizer
from lm.train_config import TrainConfig, padded_vocab_size


@dataclass(frozen=True)
class Preset:
    description: str
    options: dict  # TrainConfig fields


# Timed on a 2-core CPU with one training thread and a 512-token BPE on Tiny Shakespeare:
# tiny about 30 ms a step (a minute in all), small about 250 ms (ten minutes).
PRESETS = {
    "tiny": Preset(
        "2 layers, 64 wide: about a minute on a laptop CPU",
        dict(n_layer=2, n_head=2, n_embd=64, block_size=64, batch_size=16, max_steps=2000, lr=2e-3,
             warmup_steps=100, dropout=0.0, log_every=5, eval_every=200, sample_every=200),
    ),
    "small": Preset(
        "4 layers, 128 wide: about ten minutes on a laptop CPU",
        dict(n_layer=4, n_head=4, n_embd=128, block_size=128, batch_size=16, max_steps=2500, lr=1e-3,
             warmup_steps=100, dropout=0.0, log_every=10, eval_every=250, sample_every=250),
    ),
    "medium": Preset(
        "6 layers, 384 wide (nanoGPT's Shakespeare size): for a GPU; hours on a CPU",
        dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=32, max_steps=3000, lr=1e-3,
             warmup_steps=200, dropout=0.1, log_every=10, eval_every=250, sample_every=250),
    ),
}


def preset_options(data: str = "", size: str | None = None) -> dict:
    """The settings a run starts from before anyone's own: a task's (data "task:NAME": the
    sizes and schedule it learns with), else the named size preset's; none for anything else."""
    task = find_task(data)
    if task is not None:
        return dict(task.preset)
    return dict(PRESETS[size].options) if size in PRESETS else {}


def with_preset(options: dict, size: str | None = None) -> dict:
    """TrainConfig fields: `options` over the preset they start from (see preset_options). A
    complete config, as a planned run writes, comes back unchanged."""
    return {**preset_options(options.get("data", ""), size), **options}


@dataclass(frozen=True)
class RunChoice:
    """What a run is to learn and how, as the Train page's form (or a script) chose it."""

    settings: dict  # TrainConfig fields; data: a corpus name, a text file or "task:NAME"
    vocab_size: int | None = None  # the tokenizer's vocabulary; None for a task, which has its own
    size: str | None = None  # a size preset under the settings (a task brings its own)
    text: str | None = None  # a text to keep with the run and train on (an upload, a paste)
    tokens: int | None = None  # the text's token count; None: not counted (a task makes examples as it goes)
    tokens_bound: bool = False  # `tokens` is an upper bound (its bytes, for a BPE not trained yet)
    processes: int = 1


@dataclass(frozen=True)
class RunPlan:
    """A run ready to start: its complete config (the device resolved), the tokenizer's
    vocabulary, the text to keep with it, its processes; or why it cannot train (`problem`)."""

    config: TrainConfig
    vocab_size: int
    text: str | None = None
    processes: int = 1
    problem: str | None = None

    @property
    def model(self) -> GPTConfig:
        return self.config.model_config(padded_vocab_size(self.vocab_size))


def plan_run(choice: RunChoice) -> RunPlan:
    """The run a choice makes. One that cannot train says why in `problem`, its config still
    whole, to estimate from; a setting TrainConfig does not have raises ValueError."""
    config = TrainConfig.from_dict(with_preset(choice.settings, choice.size))
    device = resolve_device(config.device)
    if choice.processes > 1 and device.startswith("cuda"):
        device = "cuda"  # each process takes the GPU of its rank
    config = replace(config, device=device)
    task = find_task(config.data)
    vocab_size = task_tokenizer().vocab_size if task else choice.vocab_size
    if vocab_size is None:
        raise ValueError(f"planning a run on {config.data!r} needs its tokenizer's vocabulary size")
    problem = None
    try:
        if choice.processes < 1:
            raise ValueError(f"a run needs at least one process, not {choice.processes}")
        check_plan(config, vocab_size, choice.tokens, choice.tokens_bound)
    except ValueError as exc:
        problem = str(exc)
    return RunPlan(config, vocab_size, choice.text, choice.processes, problem)


def device_memory_bytes(device: str) -> int | None:
    kind = torch.device(device)
    if kind.type == "cuda":
        return torch.cuda.get_device_properties(kind.index or 0).total_memory
    return physical_memory_bytes()


def check_plan(cfg: TrainConfig, vocab_size: int, tokens: int | None, tokens_bound: bool = False) -> GPTConfig:
    """Refuse what cannot work before any process starts: the trainer's own checks, a model
    whose training (with one batch) does not fit the device's memory, and a text too short
    for the context. `tokens` is the text's token count, or with `tokens_bound` an upper
    bound on it (its length in bytes, for a BPE not trained yet); None when not counted.
    Returns the model; raises ValueError."""
    cfg.check()
    device = resolve_device(cfg.device)  # plan_run has resolved it already; a caller of its own may not have
    memory = device_memory_bytes(device)
    model = cfg.model_config(padded_vocab_size(vocab_size)).validate(memory)
    needed = training_memory_bytes(model, cfg.batch_size)  # accumulated micro-batches run one after another
    if memory and needed > memory:
        raise ConfigError(
            f"with a batch of {cfg.batch_size} sequences this needs about {needed / 2**30:.1f} GiB to train but "
            f"{device} has {memory / 2**30:.1f} GiB; use a smaller batch, context or model"
        )
    if tokens is None:
        return model
    try:  # the trainer's own split, on a stand-in of the right length (no memory: a broadcast view)
        split_tokens(np.broadcast_to(np.uint8(0), (tokens,)), cfg.val_fraction, cfg.block_size)
    except DataError as exc:
        if tokens_bound:
            raise DataError(f"{exc} (even counting every byte as a token, the most a byte-level BPE makes)") from None
        raise
    return model
