"""Open-weight models from Hugging Face as our own checkpoint folders: a model folder (or a
Hub id, downloaded into the Hugging Face cache) with config.json, *.safetensors and
tokenizer.json becomes an lm.GPT with the architecture dial set from config.json, every
tensor taken by name, shape-checked, transposed or fused into ours. Pickled weights
(.bin, .pt) are never read.

Supported: Llama (SmolLM2, TinyLlama), Mistral, Qwen3 (QK-norm), GPT-NeoX (Pythia:
parallel residual, partial rotary) and GPT-2 (lm.gpt2, the same path as import-gpt2).
Hugging Face's Linear stores a weight [out, in], ours [in, out] (lm.attention.Linear), so
every projection is transposed; q, k and v go side by side into one c_attn, as do SwiGLU's
gate and up into c_fc; GPT-NeoX interleaves q, k, v head by head and is regrouped.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open

from lm.checkpoint import CONFIG_FILE, TIED, save_checkpoint, unfilled_gpt
from lm.gpt2 import PICKLE_SUFFIXES, check_free_space, load_gpt2
from lm.hf_tokenizer import HFTokenizer
from lm.model import GPT, ConfigError, GPTConfig
from lm.sizing import parameter_count
from lm.tokenizer import TiktokenTokenizer, TokenizerError

DEFAULT_CONTEXT = 2048  # Qwen3 trains 40,960 positions: a KV cache that long takes GBs; --context to change
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
HUB_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"]
IMPORTED = "open weights in Hugging Face's format, imported, not trained here"  # the checkpoint's training.source
SKIPPED = re.compile(r".*(rotary_emb\.inv_freq|attention\.bias|attention\.masked_bias)")  # buffers, not weights


class HFImportError(ValueError):
    """A model that cannot be imported; the message says which file and why."""


@dataclass(frozen=True)
class Source:
    """One of our tensors, made from the file's: their names, the shapes config.json implies, and how they combine."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    combine: Callable[..., torch.Tensor]


def copied(name: str, *shape: int) -> Source:
    return Source((name,), (shape,), lambda t: t)


def linear(name: str, n_out: int, n_in: int) -> Source:
    return Source((name,), ((n_out, n_in),), lambda w: w.t())


def side_by_side(parts: list[tuple[str, int]], n_in: int | None) -> Source:
    """Several Linear weights [out_i, n_in] (or biases [out_i], n_in None) as one [n_in, Σ out_i] (or [Σ out_i])."""
    shapes = tuple((n_out, n_in) if n_in else (n_out,) for _, n_out in parts)
    return Source(tuple(name for name, _ in parts), shapes,
                  lambda *ts: torch.cat(ts, dim=0).t() if n_in else torch.cat(ts, dim=0))


# --- config.json -> GPTConfig ------------------------------------------------------------


def rope_settings(hf: dict) -> dict:
    """Rotary base and fraction, from transformers 5's rope_parameters or the older top-level keys."""
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise HFImportError(f"config.json asks for {kind!r} rotary scaling; lm.GPT computes plain RoPE only")
    base = params.get("rope_theta", hf.get("rope_theta", hf.get("rotary_emb_base", 10000.0)))
    fraction = params.get("partial_rotary_factor", hf.get("partial_rotary_factor", hf.get("rotary_pct", 1.0)))
    return dict(position="rope", rope_base=float(base), rotary_fraction=float(fraction))


def window_settings(hf: dict) -> dict:
    """Sliding-window attention: per layer from layer_types (Qwen3, newer configs), else for every layer (Mistral)."""
    window, types = hf.get("sliding_window"), hf.get("layer_types")
    if types:
        unknown = set(types) - {"full_attention", "sliding_attention"}
        if unknown:
            raise HFImportError(f"config.json has layers of type {', '.join(sorted(unknown))}, which lm.GPT does not have")
        sliding = [i for i, kind in enumerate(types) if kind == "sliding_attention"]
        if not sliding or window is None:
            return {}
        return dict(window=window, window_layers=None if len(sliding) == len(types) else sliding)
    if hf.get("model_type") == "qwen3" and not hf.get("use_sliding_window"):
        return {}
    return dict(window=window) if window else {}


def llama_config(hf: dict) -> dict:
    if hf.get("hidden_act", "silu") != "silu":
        raise HFImportError(f"hidden_act {hf['hidden_act']!r}: lm.GPT's gated MLP is SwiGLU (silu)")
    if hf.get("attention_bias", False) != hf.get("mlp_bias", False):
        raise HFImportError("biases in attention but not in the MLP (or the reverse): lm.GPT has one switch for both")
    n_head, n_embd = hf["num_attention_heads"], hf["hidden_size"]
    head_size = hf.get("head_dim") or n_embd // n_head
    return dict(n_kv_head=hf.get("num_key_value_heads") or n_head, mlp="swiglu", mlp_hidden=hf["intermediate_size"],
                norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6), qk_norm=hf["model_type"] == "qwen3",
                head_size=None if head_size * n_head == n_embd else head_size, bias=bool(hf.get("attention_bias")),
                **rope_settings(hf), **window_settings(hf))


def neox_config(hf: dict) -> dict:
    activations = {"gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu"}
    if hf.get("hidden_act", "gelu") not in activations:
        raise HFImportError(f"hidden_act {hf['hidden_act']!r}: lm.GPT's MLP has GELU (exact or tanh) here")
    if not hf.get("attention_bias", True):
        raise HFImportError("a GPT-NeoX without attention biases: lm.GPT has one bias switch, and NeoX's norms have biases")
    return dict(mlp=activations[hf.get("hidden_act", "gelu")], mlp_hidden=hf["intermediate_size"],
                norm_eps=hf.get("layer_norm_eps", 1e-5), parallel_residual=hf.get("use_parallel_residual", True),
                **rope_settings(hf))


ARCHITECTURES = {"llama": llama_config, "mistral": llama_config, "qwen3": llama_config, "gpt_neox": neox_config}


def gpt_config(hf: dict, context: int | None = None) -> GPTConfig:
    """The GPTConfig a Hugging Face config.json describes, its context cut to `context`
    (default: the model's, at most DEFAULT_CONTEXT)."""
    kind = hf.get("model_type")
    if kind not in ARCHITECTURES:
        raise HFImportError(f"config.json describes a {kind!r} model; this importer knows "
                            f"{', '.join([*ARCHITECTURES, 'gpt2'])}")
    trained = hf.get("max_position_embeddings", DEFAULT_CONTEXT)
    if context is not None and not 0 < context <= trained:
        raise HFImportError(f"--context must be between 1 and the {trained:,} positions the model was trained on")
    try:
        sizes = dict(vocab_size=hf["vocab_size"], n_layer=hf["num_hidden_layers"], n_head=hf["num_attention_heads"],
                     n_embd=hf["hidden_size"], block_size=context or min(trained, DEFAULT_CONTEXT), dropout=0.0)
        return GPTConfig(**sizes, tied_head=bool(hf.get("tie_word_embeddings", False)), **ARCHITECTURES[kind](hf))
    except KeyError as exc:
        raise HFImportError(f"config.json has no {exc.args[0]}") from None


# --- the file's tensors -> ours --------------------------------------------------------


def llama_sources(c: GPTConfig) -> dict[str, Source]:
    C, D, F, V = c.n_embd, c.head_dim, c.mlp_width, c.vocab_size
    q, kv = c.n_head * D, c.kv_heads * D
    sources = {"transformer.wte.weight": copied("model.embed_tokens.weight", V, C),
               "transformer.ln_f.weight": copied("model.norm.weight", C)}
    if not c.tied_head:
        sources[TIED] = copied(TIED, V, C)
    for i in range(c.n_layer):
        ours, theirs = f"transformer.h.{i}.", f"model.layers.{i}."
        attn = [(f"{theirs}self_attn.{p}_proj", n) for p, n in (("q", q), ("k", kv), ("v", kv))]
        sources |= {
            ours + "ln_1.weight": copied(theirs + "input_layernorm.weight", C),
            ours + "attn.c_attn.weight": side_by_side([(n + ".weight", size) for n, size in attn], C),
            ours + "attn.c_proj.weight": linear(theirs + "self_attn.o_proj.weight", C, q),
            ours + "ln_2.weight": copied(theirs + "post_attention_layernorm.weight", C),
            ours + "mlp.c_fc.weight": side_by_side([(f"{theirs}mlp.{p}_proj.weight", F) for p in ("gate", "up")], C),
            ours + "mlp.c_proj.weight": linear(theirs + "mlp.down_proj.weight", C, F),
        }
        if c.bias:
            sources |= {
                ours + "attn.c_attn.bias": side_by_side([(n + ".bias", size) for n, size in attn], None),
                ours + "attn.c_proj.bias": copied(theirs + "self_attn.o_proj.bias", C),
                ours + "mlp.c_fc.bias": side_by_side([(f"{theirs}mlp.{p}_proj.bias", F) for p in ("gate", "up")], None),
                ours + "mlp.c_proj.bias": copied(theirs + "mlp.down_proj.bias", C),
            }
        if c.qk_norm:
            sources |= {ours + f"attn.{p}_norm.weight": copied(f"{theirs}self_attn.{p}_norm.weight", D) for p in "qk"}
    return sources


def neox_sources(c: GPTConfig) -> dict[str, Source]:
    C, H, D, F, V = c.n_embd, c.n_head, c.head_dim, c.mlp_width, c.vocab_size
    regroup = lambda t: t.unflatten(0, (H, 3, D)).transpose(0, 1).flatten(0, 2)  # noqa: E731  [q0 k0 v0 q1 ...] -> [q k v]
    sources = {"transformer.wte.weight": copied("gpt_neox.embed_in.weight", V, C)}
    sources |= {f"transformer.ln_f.{p}": copied(f"gpt_neox.final_layer_norm.{p}", C) for p in ("weight", "bias")}
    if not c.tied_head:
        sources[TIED] = copied("embed_out.weight", V, C)
    for i in range(c.n_layer):
        ours, theirs = f"transformer.h.{i}.", f"gpt_neox.layers.{i}."
        for p in ("weight", "bias"):
            sources |= {ours + f"ln_1.{p}": copied(theirs + f"input_layernorm.{p}", C),
                        ours + f"ln_2.{p}": copied(theirs + f"post_attention_layernorm.{p}", C)}
        sources |= {
            ours + "attn.c_attn.weight": Source((theirs + "attention.query_key_value.weight",), ((3 * C, C),),
                                                lambda w: regroup(w).t()),
            ours + "attn.c_attn.bias": Source((theirs + "attention.query_key_value.bias",), ((3 * C,),), regroup),
            ours + "attn.c_proj.weight": linear(theirs + "attention.dense.weight", C, C),
            ours + "attn.c_proj.bias": copied(theirs + "attention.dense.bias", C),
            ours + "mlp.c_fc.weight": linear(theirs + "mlp.dense_h_to_4h.weight", F, C),
            ours + "mlp.c_fc.bias": copied(theirs + "mlp.dense_h_to_4h.bias", F),
            ours + "mlp.c_proj.weight": linear(theirs + "mlp.dense_4h_to_h.weight", C, F),
            ours + "mlp.c_proj.bias": copied(theirs + "mlp.dense_4h_to_h.bias", C),
        }
    return sources


SOURCES = {"llama": llama_sources, "mistral": llama_sources, "qwen3": llama_sources, "gpt_neox": neox_sources}


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
    with safe_open(str(files[0]), framework="pt") as f:
        return {name: files[0] for name in f.keys()}


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
        raise HFImportError(f"the .safetensors files are truncated, corrupt or of another format ({exc})") from None
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


def import_hf(source: str, out: str | os.PathLike | None = None, revision: str | None = None,
              context: int | None = None, downloader: Callable | None = None) -> Path:
    """A Hugging Face model (a folder, or a Hub id) as a checkpoint folder: `out`, by default
    its name in the runs folder ($LM_RUNS_DIR, else runs/). Never overwrites a model."""
    local = Path(source).expanduser()
    if not local.is_dir() and not HUB_ID.fullmatch(source):
        raise HFImportError(f"there is no folder {source}, and it is not a Hugging Face model id (owner/name)")
    name = local.name if local.is_dir() else source.split("/")[-1] + (f"-{revision}" if revision else "")
    out = Path(out) if out else Path(os.environ.get("LM_RUNS_DIR", "runs")) / name
    if (out / CONFIG_FILE).exists():
        raise HFImportError(f"{out} already holds a model; choose another folder or delete it first")
    folder = local if local.is_dir() else download(source, revision, downloader)
    model, tokenizer = load_hf(folder, context)
    check_free_space(out, 4 * parameter_count(model.config), f"write the checkpoint to {out}")
    provenance = {
        "source": IMPORTED,
        "model": name, "hugging_face_repo": None if local.is_dir() else source, "revision": revision,
        "folder": str(folder.absolute()), "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return save_checkpoint(out, model, tokenizer, provenance)
