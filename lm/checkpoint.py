"""The checkpoint folder every page, the CLI and the trainer share:

    config.json          {"format", "version", "model": GPTConfig, "training": how it was made}
    tokenizer.json       the own BPE, or {"tiktoken": "<name>"}
    model.safetensors    the weights; safetensors holds only tensors, so loading runs no code

The three are replaced as one unit (lm.journal: written beside the old ones, then switched
in behind a manifest.json that names each file's size and hash), and each file whole, so
a reader never sees half a file and a killed writer never leaves a mixed set.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch.overrides import TorchFunctionMode
from safetensors.torch import load_file, save_file

from lm.journal import Writer, commit
from lm.model import GPT, ConfigError, GPTConfig
from lm.tokenizer import BPETokenizer, TiktokenTokenizer, TokenizerError, load_tokenizer

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "llm-explorer/checkpoint"
FORMAT_VERSION = 1
TIED = "lm_head.weight"  # with a tied head, the same tensor as transformer.wte.weight: stored once
CLASSIFIER = "classifier"  # a classification head (lm.finetune.classify): weights "classifier.*" beside the GPT's,
# its labels in config.json; load_checkpoint loads the GPT without it


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded; the message says which file and why."""


@dataclass
class Checkpoint:
    model: GPT
    tokenizer: BPETokenizer | TiktokenTokenizer
    training: dict = field(default_factory=dict)
    path: Path | None = None


def checkpoint_writers(model: GPT, tokenizer, training: dict | None = None) -> dict[str, Writer]:
    """How to write each file of the checkpoint, in the order they are switched in: the
    config last, as a folder counts as a checkpoint once it has one."""
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
               if k != TIED or not model.config.tied_head}
    config = {"format": FORMAT, "version": FORMAT_VERSION, "model": model.config.to_dict(), "training": training or {}}
    if hasattr(model, CLASSIFIER):
        config[CLASSIFIER] = {"labels": list(getattr(model, CLASSIFIER).labels)}
    return {
        WEIGHTS_FILE: lambda path: save_file(weights, str(path), metadata={"format": FORMAT}),
        TOKENIZER_FILE: tokenizer.save,
        CONFIG_FILE: lambda path: path.write_text(json.dumps(config, indent=2), encoding="utf-8"),
    }


def save_checkpoint(folder: str | os.PathLike, model: GPT, tokenizer, training: dict | None = None) -> Path:
    folder, step = Path(folder), (training or {}).get("step")
    commit(folder, checkpoint_writers(model, tokenizer, training), step=step if type(step) is int else None)
    return folder


def has_checkpoint(folder: Path) -> bool:
    """Whether the folder holds a checkpoint's config and weights (not whether they load)."""
    return (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def read_config(folder: str | os.PathLike) -> tuple[GPTConfig, dict]:
    """The model config and training record, checked, without touching the weights."""
    path = Path(folder) / CONFIG_FILE
    if not Path(folder).is_dir():
        raise CheckpointError(f"there is no folder {folder}")
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a checkpoint: it has no {CONFIG_FILE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{CONFIG_FILE} in {folder} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{CONFIG_FILE} in {folder} is not an LLM Explorer checkpoint (no matching 'format')")
    if data.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint version {data.get('version')!r}; this program reads version {FORMAT_VERSION}")
    try:
        config = GPTConfig.from_dict(data["model"]).validate(training=False)
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{CONFIG_FILE} in {folder} has a bad model config: {exc}") from None
    training = data.get("training") or {}
    if not isinstance(training, dict) or not isinstance(training.get("config", {}), dict):
        raise CheckpointError(f"{CONFIG_FILE} in {folder} has a bad training record: it must be a JSON object")
    return config, training


INIT_OPS = {"normal_", "uniform_", "kaiming_uniform_", "zero_", "zeros_", "ones_", "fill_"}


class _SkipInit(TorchFunctionMode):
    """Initializers do nothing: the parameters keep whatever memory they were given."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) in INIT_OPS:
            return args[0] if args else kwargs["tensor"]  # torch.nn.init passes it by name
        return func(*args, **kwargs)


def unfilled_gpt(config: GPTConfig) -> GPT:
    """A GPT whose weights are never drawn, for weights loaded next with load_state_dict(assign=True).
    Its untouched memory costs nothing until written, and it skips what the meta device would
    cost: a first meta-tensor initializer imports torch._dynamo, seconds before a class's first chart."""
    with _SkipInit():
        return GPT(config)


def load_checkpoint(folder: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    folder = Path(folder)
    config, training = read_config(folder)
    try:
        tokenizer = load_tokenizer(folder / TOKENIZER_FILE)
    except TokenizerError as exc:
        raise CheckpointError(f"{TOKENIZER_FILE} in {folder}: {exc}") from None
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"the tokenizer has {tokenizer.vocab_size:,} tokens but the model only {config.vocab_size:,} embeddings"
        )
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_FILE}")
    try:
        weights = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{WEIGHTS_FILE} in {folder} is truncated or corrupt ({exc})") from None
    model = unfilled_gpt(config)  # the loaded tensors become the weights, no second copy
    expected = {k: v.shape for k, v in model.state_dict().items() if k != TIED or not config.tied_head}
    weights = {name: tensor for name, tensor in weights.items() if not name.startswith(CLASSIFIER + ".")}
    missing, unexpected = sorted(expected.keys() - weights.keys()), sorted(weights.keys() - expected.keys())
    if missing or unexpected:
        raise CheckpointError(
            f"{WEIGHTS_FILE} in {folder} does not match its config: "
            f"missing {missing[:3] or 'nothing'}, unexpected {unexpected[:3] or 'nothing'}"
        )
    for name, shape in expected.items():
        if weights[name].shape != shape:
            raise CheckpointError(f"{name} has shape {tuple(weights[name].shape)}, the config needs {tuple(shape)}")
    weights = {name: tensor.float() for name, tensor in weights.items()}  # the model computes in fp32
    model.load_state_dict(weights, strict=False, assign=True)  # strict minus the tied head, checked above
    if config.tied_head:
        model.lm_head.weight = model.transformer.wte.weight  # assigning replaced the embedding: tie the head again
    return Checkpoint(model.to(device).eval(), tokenizer, training, folder)
