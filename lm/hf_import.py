"""Open-weight models from Hugging Face as our own checkpoint folders: a model folder (or a
Hub id, downloaded into the Hugging Face cache) with config.json, *.safetensors and
tokenizer.json becomes an lm.GPT with the architecture dial set from config.json, every
tensor taken by name, shape-checked, transposed or fused into ours. Pickled weights
(.bin, .pt) are never read.

Supported: Llama (SmolLM2, TinyLlama), Mistral, Qwen3 (QK-norm), GPT-NeoX (Pythia:
parallel residual, partial rotary), Gemma 3 text (sandwich norms, GeGLU, local and global
layers) and GPT-2 (lm.gpt2, the same path as import-gpt2).
How each architecture's names and config map onto ours is in lm.hf_architectures.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open

from lm.checkpoint import CONFIG_FILE, TIED, save_checkpoint, unfilled_gpt
from lm.hf_architectures import DEFAULT_CONTEXT, SOURCES, HFImportError, Source, gpt_config  # noqa: F401 (public here)
from lm.gpt2 import PICKLE_SUFFIXES, check_free_space, load_gpt2, runs_folder
from lm.hf_tokenizer import HFTokenizer
from lm.model import GPT, ConfigError
from lm.sizing import parameter_count
from lm.tokenizer import TiktokenTokenizer, TokenizerError

HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
HUB_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"]
IMPORTED = "open weights in Hugging Face's format, imported, not trained here"  # the checkpoint's training.source
SKIPPED = re.compile(r".*(rotary_emb\.inv_freq|attention\.bias|attention\.masked_bias)")  # buffers, not weights


# --- the folder -> an lm.GPT and its tokenizer --------------------------------------------


def weight_files(folder: Path) -> dict[str, Path]:
    """Which safetensors file holds each tensor: model.safetensors, or the shards its index names."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            return {name: folder / file for name, file in weight_map.items()}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise HFImportError(f"{index} is not a readable index of the weights ({exc!r})") from None
    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        hint = f" It holds {', '.join(pickles)}: pickles, which can run code when loaded, so they are not read." if pickles else ""
        raise HFImportError(f"{folder} has {len(files) or 'no'} .safetensors files and no index of them.{hint}")
    try:
        with safe_open(str(files[0]), framework="pt") as f:
            return {name: files[0] for name in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise unreadable(exc) from None


def unreadable(exc: Exception) -> HFImportError:
    return HFImportError(f"the .safetensors files are truncated, corrupt or of another format ({exc})")


def read_weights(files: dict[str, Path], sources: dict[str, Source], tied_to: str | None) -> dict[str, torch.Tensor]:
    """Our tensors, float32, made from the file's after every name and shape is checked (shapes
    come from the headers, so a wrong file fails before anything big is read). `tied_to`: a
    tied head's embedding, which the file's head (if it has one) must equal."""
    used = {name for source in sources.values() for name in source.names}
    missing = sorted(used - files.keys())
    unexpected = sorted(n for n in files.keys() - used if not SKIPPED.fullmatch(n) and not (n == TIED and tied_to))
    if missing or unexpected:
        raise HFImportError(f"the weights do not match config.json: missing {', '.join(missing[:3]) or 'nothing'}"
                            f"{' …' if len(missing) > 3 else ''}; unexpected {', '.join(unexpected[:3]) or 'nothing'}"
                            f"{' …' if len(unexpected) > 3 else ''}")
    with ExitStack() as stack:
        handles = {path: stack.enter_context(safe_open(str(path), framework="pt")) for path in set(files.values())}
        return _read(handles, files, sources, tied_to)


def _read(handles: dict, files: dict[str, Path], sources: dict[str, Source], tied_to: str | None) -> dict[str, torch.Tensor]:
    try:
        for source in sources.values():
            for name, shape in zip(source.names, source.shapes):
                if tuple(handles[files[name]].get_slice(name).get_shape()) != shape:
                    found = handles[files[name]].get_slice(name).get_shape()
                    raise HFImportError(f"{name} has shape {list(found)}; config.json's sizes need {list(shape)}")
        weights = {ours: source.combine(*(handles[files[n]].get_tensor(n).float() for n in source.names)).contiguous()
                   for ours, source in sources.items()}
        if tied_to and TIED in files and not torch.equal(handles[files[TIED]].get_tensor(TIED).float(), weights[tied_to]):
            raise HFImportError("config.json ties the output head to the token embedding, but lm_head.weight differs")
    except (SafetensorError, OSError) as exc:
        raise unreadable(exc) from None
    return weights


def read_hf_config(folder: Path) -> dict:
    try:
        hf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HFImportError(f"{folder} has no readable Hugging Face config.json ({exc})") from None
    if not isinstance(hf, dict) or "model_type" not in hf:
        raise HFImportError(f"{folder / 'config.json'} is not a Hugging Face model config (it has no model_type)")
    return hf


def load_hf(folder: str | os.PathLike, context: int | None = None) -> tuple[GPT, object]:
    """The model in a Hugging Face folder as lm.GPT (eval mode), and its tokenizer."""
    folder = Path(folder)
    hf = read_hf_config(folder)
    try:
        tokenizer = HFTokenizer.from_folder(folder, folder.name) if (folder / "tokenizer.json").is_file() else None
    except TokenizerError as exc:
        raise HFImportError(f"{folder / 'tokenizer.json'}: {exc}") from None
    if hf["model_type"] == "gpt2":  # OpenAI's GPT-2 keeps its own importer; without tokenizer.json, its tiktoken
        return load_gpt2(folder), tokenizer or TiktokenTokenizer("r50k_base")
    if tokenizer is None:
        raise HFImportError(f"{folder} has no tokenizer.json: the model's ids mean nothing without it")
    config = gpt_config(hf, context)
    try:
        config.validate(training=False)
    except ConfigError as exc:
        raise HFImportError(f"{folder.name} cannot be built here: {exc}") from None
    if tokenizer.vocab_size > config.vocab_size:
        raise HFImportError(f"tokenizer.json has {tokenizer.vocab_size:,} tokens, the model {config.vocab_size:,}")
    sources = SOURCES[hf["model_type"]](config)
    weights = read_weights(weight_files(folder), sources, "transformer.wte.weight" if config.tied_head else None)
    model = unfilled_gpt(config)  # the tensors read become the weights
    result = model.load_state_dict(weights, strict=False, assign=True)
    if set(result.missing_keys) - ({TIED} if config.tied_head else set()) or result.unexpected_keys:
        raise HFImportError(f"this importer's map of {hf['model_type']} misses {result.missing_keys[:3]}")
    if config.tied_head:
        model.lm_head.weight = model.transformer.wte.weight
    return model.eval(), tokenizer


# --- a Hub id -> a folder, and the whole import ---------------------------------------------


def download(repo_id: str, revision: str | None = None, downloader: Callable | None = None) -> Path:
    """The model's files from the Hugging Face Hub into its cache (a second call finds them there)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, HTTPError, LocalEntryNotFoundError

    try:
        return Path((downloader or snapshot_download)(repo_id=repo_id, revision=revision, allow_patterns=HUB_FILES))
    except (HTTPError, OSError, HFValidationError) as exc:
        offline = isinstance(exc, (LocalEntryNotFoundError, ConnectionError))
        why = "no network, or offline mode (HF_HUB_OFFLINE), and no copy in the cache" if offline else str(exc)
        raise HFImportError(
            f"could not download {repo_id}{f' at {revision}' if revision else ''} from Hugging Face ({why}). On a "
            f"connected machine, download config.json, the .safetensors files and tokenizer.json from "
            f"https://huggingface.co/{repo_id}, copy them into one folder here and import that folder."
        ) from exc


def local_folder(source: str) -> Path | None:
    """The folder `source` names, or None where it is a Hub id (owner/name); a clear error for neither."""
    local = Path(source).expanduser()
    if local.is_dir():
        return local
    if not HUB_ID.fullmatch(source):
        raise HFImportError(f"there is no folder {source}, and it is not a Hugging Face model id (owner/name)")
    return None


def import_hf(source: str, out: str | os.PathLike | None = None, revision: str | None = None,
              context: int | None = None, downloader: Callable | None = None) -> Path:
    """A Hugging Face model (a folder, or a Hub id) as a checkpoint folder: `out`, by default
    its name in the runs folder ($LM_RUNS_DIR, else runs/). Never overwrites a model."""
    local = local_folder(source)
    name = local.name if local else source.split("/")[-1] + (f"-{revision}" if revision else "")
    out = Path(out) if out else runs_folder(name)
    if (out / CONFIG_FILE).exists():
        raise HFImportError(f"{out} already holds a model; choose another folder or delete it first")
    folder = local or download(source, revision, downloader)
    model, tokenizer = load_hf(folder, context)
    check_free_space(out, 4 * parameter_count(model.config), f"write the checkpoint to {out}")
    provenance = {
        "source": IMPORTED,
        "model": name, "hugging_face_repo": None if local else source, "revision": revision,
        "folder": str(folder.absolute()), "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return save_checkpoint(out, model, tokenizer, provenance)
