"""OpenAI's GPT-2, imported into our own GPT: the way chapter 5 of Raschka's book loads
OpenAI's weights into the model the reader wrote.

The weights come from Hugging Face's `model.safetensors` (downloaded once into the
Hugging Face cache, or a file or folder the user already has). Every tensor is matched
by name and shape against `lm.GPT`, and the model is written as an ordinary checkpoint
folder with GPT-2's tokenizer (tiktoken's r50k_base), so every page and command loads
it like a model trained here.

Names: the original files say `h.0.attn.c_attn.weight`, files saved by newer
transformers `transformer.h.0.attn.c_attn.weight`; ours are the latter. No weight is
transposed: GPT-2's "Conv1D" stores a weight [in, out], and so does `lm.attention.Linear`.
The head is tied to the token embedding, as in GPT-2, so `lm_head.weight` (if present)
must equal `wte.weight`. `attn.bias` / `attn.masked_bias` in old files are the causal
mask saved as buffers, not weights; they are skipped. LayerNorm epsilon is 1e-5 and the
MLP's GELU the tanh approximation in both models.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from tqdm import tqdm

from lm.checkpoint import CONFIG_FILE, TIED, save_checkpoint
from lm.model import GPT, GPTConfig
from lm.sizing import inference_memory_bytes, parameter_count, physical_memory_bytes
from lm.tokenizer import TiktokenTokenizer

VOCAB_SIZE = 50_257  # r50k_base: 50,000 merges + 256 bytes + <|endoftext|>
CONTEXT = 1024
WEIGHTS_FILE = "model.safetensors"  # a Hugging Face model's files (a checkpoint's own: lm.checkpoint)
HF_CONFIG_FILE = "config.json"
BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")  # the causal mask, saved as a buffer by old transformers
PREFIX = "transformer."
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass(frozen=True)
class GPT2Size:
    repo_id: str
    n_layer: int
    n_head: int
    n_embd: int
    label: str

    def config(self) -> GPTConfig:
        return GPTConfig(vocab_size=VOCAB_SIZE, block_size=CONTEXT, n_layer=self.n_layer, n_head=self.n_head,
                         n_embd=self.n_embd, dropout=0.0, bias=True)

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/tree/main"


SIZES = {
    "small": GPT2Size("openai-community/gpt2", 12, 12, 768, "GPT-2 small (124M)"),
    "medium": GPT2Size("openai-community/gpt2-medium", 24, 16, 1024, "GPT-2 medium (355M)"),
    "large": GPT2Size("openai-community/gpt2-large", 36, 20, 1280, "GPT-2 large (774M)"),
    "xl": GPT2Size("openai-community/gpt2-xl", 48, 25, 1600, "GPT-2 XL (1.5B)"),
}


class GPT2ImportError(ValueError):
    """Weights that cannot be imported (missing, foreign, truncated, not downloadable); the message says why."""


# --- where the weights are -------------------------------------------------------------


def find_weights(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """The safetensors file at `path` (a file, or a folder holding model.safetensors) and the
    Hugging Face config.json beside it, if there is one."""
    path = Path(path).expanduser()
    if path.is_dir():
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
            hint = (f" It holds {', '.join(sorted(pickles))}: a pickle, which can run code when it is loaded, so "
                    f"it is not read here." if pickles else "")
            raise GPT2ImportError(f"{path} has no {WEIGHTS_FILE}.{hint} Download {WEIGHTS_FILE} (and config.json) "
                                  f"from {SIZES['small'].url} and point at the file or its folder.")
    elif not path.is_file():
        raise GPT2ImportError(f"there is no file or folder {path}")
    elif path.suffix in PICKLE_SUFFIXES:
        raise GPT2ImportError(f"{path.name} is a pickle, which can run code when it is loaded, so it is not read "
                              f"here. Use the model's {WEIGHTS_FILE} (from {SIZES['small'].url} for GPT-2).")
    else:
        weights = path
    config = weights.parent / HF_CONFIG_FILE
    return weights, config if config.is_file() else None


def download_gpt2(size: str = "small", progress: Callable[[int, int], None] | bool = False) -> Path:
    """GPT-2's model.safetensors (and config.json beside it) from the Hugging Face Hub, into its
    cache: a second call finds it there, an interrupted download resumes. `progress` is True for
    a terminal progress bar, or a callback (bytes done, bytes in all)."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, HTTPError, LocalEntryNotFoundError

    spec = size_spec(size)
    check_memory(spec.config())
    check_free_space(Path(constants.HF_HUB_CACHE), 4 * parameter_count(spec.config()),
                      f"download {spec.label} into the Hugging Face cache")
    silent = reporting_bar(lambda done, total: None)
    bar = None if progress is True else reporting_bar(progress) if callable(progress) else silent
    try:
        hf_hub_download(spec.repo_id, HF_CONFIG_FILE, tqdm_class=silent)
        path = hf_hub_download(spec.repo_id, WEIGHTS_FILE, tqdm_class=bar)
    except (HTTPError, OSError) as exc:  # offline, no network, the Hub down or answering 4xx/5xx, disk full
        if isinstance(exc, HfHubHTTPError) and exc.response is not None:
            why = f"the server answered {exc.response.status_code}"
        elif isinstance(exc, (LocalEntryNotFoundError, ConnectionError)) or not isinstance(exc, OSError):
            why = f"{type(exc).__name__}: no network, or offline mode (HF_HUB_OFFLINE), and no copy in the cache"
        else:
            why = f"{type(exc).__name__}: {exc}"
        raise GPT2ImportError(
            f"Could not download {spec.label} from Hugging Face ({why}). On a connected machine, download "
            f"{WEIGHTS_FILE} and {HF_CONFIG_FILE} from {spec.url}, copy them into one folder here and import that "
            f"folder (python -m lm import-gpt2 --from FOLDER), or point HF_HOME at a Hugging Face cache that has them."
        ) from exc
    return Path(path)


def size_spec(size: str) -> GPT2Size:
    if size not in SIZES:
        raise GPT2ImportError(f"unknown GPT-2 size {size!r}; choose one of {', '.join(SIZES)}")
    return SIZES[size]


def reporting_bar(callback: Callable[[int, int], None]) -> type[tqdm]:
    """A tqdm class for hf_hub_download that draws nothing and passes (bytes done, bytes in
    all) to `callback`, from whichever thread downloads. A Xet download moves two bars (bytes
    received, bytes written); the one further along is reported, so progress never goes back."""
    furthest = [0.0]

    class ReportingBar(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": True})  # disabled: tqdm keeps n and total only

        def update(self, n: float | None = 1) -> None:
            self.n += n or 0
            if self.total and self.n / self.total >= furthest[0]:
                furthest[0] = self.n / self.total
                callback(int(min(self.n, self.total)), int(self.total))

    return ReportingBar


# --- from the file into lm.GPT ----------------------------------------------------------


def read_hf_config(path: Path | None) -> dict:
    """The fields of a Hugging Face GPT-2 config.json that matter here; {} without one.
    Refuses what lm.GPT cannot compute the same way."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GPT2ImportError(f"{path} is not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or "model_type" not in data:
        return {}  # not a Hugging Face config (e.g. an LLM Explorer checkpoint's): the file decides
    if data["model_type"] != "gpt2":
        raise GPT2ImportError(f"{path} describes a {data['model_type']!r} model, not GPT-2")
    differences = {
        "activation_function": (data.get("activation_function", "gelu_new") in ("gelu_new", "gelu_pytorch_tanh"),
                                "lm.GPT's MLP uses GELU's tanh approximation (gelu_new)"),
        "layer_norm_epsilon": (data.get("layer_norm_epsilon", 1e-5) == 1e-5, "lm.GPT's LayerNorms use eps 1e-5"),
        "n_inner": (data.get("n_inner") in (None, 4 * data.get("n_embd", 0)), "lm.GPT's MLP is 4 × n_embd wide"),
        "scale_attn_weights": (data.get("scale_attn_weights", True), "lm.GPT divides the scores by √head size"),
        "scale_attn_by_inverse_layer_idx": (not data.get("scale_attn_by_inverse_layer_idx", False),
                                            "lm.GPT does not scale attention by layer"),
        "tie_word_embeddings": (data.get("tie_word_embeddings", True), "lm.GPT's head is the token embedding"),
    }
    for name, (same, why) in differences.items():
        if not same:
            raise GPT2ImportError(f"{path}: {name} = {data.get(name)!r} cannot be imported: {why}")
    return data


def infer_config(shapes: dict[str, tuple[int, ...]], hf_config: dict) -> GPTConfig:
    """The GPTConfig a file's tensors describe (names without the 'transformer.' prefix):
    vocabulary and width from wte, context from wpe, depth from the h.N blocks, heads from
    config.json or, without one, from GPT-2's sizes."""
    for name in ("wte.weight", "wpe.weight"):
        if name not in shapes or len(shapes[name]) != 2:
            some = ", ".join(sorted(shapes)[:3]) or "no tensors at all"
            raise GPT2ImportError(f"this is not a GPT-2 file: it has no 2-D {name} (it has {some}, …)")
    (vocab_size, n_embd), (block_size, wpe_width) = shapes["wte.weight"], shapes["wpe.weight"]
    if wpe_width != n_embd:
        raise GPT2ImportError(f"wpe.weight is {wpe_width} wide but wte.weight {n_embd}: this is not a GPT-2 file")
    if vocab_size < VOCAB_SIZE:
        raise GPT2ImportError(f"wte.weight has {vocab_size:,} rows; GPT-2's tokenizer needs {VOCAB_SIZE:,}: "
                              f"this model was not trained with GPT-2's tokenizer")
    layers = {int(m.group(1)) for name in shapes if (m := re.match(r"h\.(\d+)\.", name))}
    if layers != set(range(len(layers))):
        raise GPT2ImportError(f"the blocks h.N are not numbered 0 to {len(layers) - 1}: {sorted(layers)}")
    n_layer = len(layers)
    found = {"vocab_size": vocab_size, "n_positions": block_size, "n_layer": n_layer, "n_embd": n_embd}
    for name, value in found.items():
        if hf_config.get(name, value) != value:
            raise GPT2ImportError(f"config.json says {name} = {hf_config[name]} but the weights have {value}: "
                                  f"they belong to different models")
    n_head = hf_config.get("n_head") or next(
        (s.n_head for s in SIZES.values() if (s.n_layer, s.n_embd) == (n_layer, n_embd)), None)
    if n_head is None:
        raise GPT2ImportError(f"{n_layer} layers {n_embd} wide is none of GPT-2's sizes, so the number of heads is "
                              f"unknown: put the model's Hugging Face config.json beside the file")
    return GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
                     n_embd=n_embd, dropout=0.0, bias=True)


def load_gpt2(path: str | os.PathLike) -> GPT:
    """lm.GPT holding the weights in `path` (a model.safetensors file, or its folder), every
    tensor checked by name and shape before the model is built. Tensors are copied one at a
    time from the memory-mapped file, so the import needs the model's memory, not twice it."""
    weights, config_path = find_weights(path)
    hf_config = read_hf_config(config_path)
    try:
        with safe_open(str(weights), framework="pt") as f:
            keys = {key.removeprefix(PREFIX): key for key in f.keys()}
            keys = {name: key for name, key in keys.items() if not BUFFER.fullmatch(name)}
            shapes = {name: tuple(f.get_slice(key).get_shape()) for name, key in keys.items()}
            config = infer_config(shapes, hf_config)
            check_memory(config)
            expected = _expected_shapes(config)
            _check_tensors(shapes, expected)
            model = GPT(config)
            parameters = dict(model.named_parameters())
            with torch.no_grad():
                for name in expected:
                    parameters[PREFIX + name].copy_(f.get_tensor(keys[name]))
                if TIED in shapes and not torch.equal(f.get_tensor(keys[TIED]).float(), model.lm_head.weight):
                    raise GPT2ImportError(f"{TIED} differs from wte.weight: the file's output head is not tied to "
                                          f"its token embedding, and lm.GPT's is (as in GPT-2)")
    except (SafetensorError, OSError) as exc:
        raise GPT2ImportError(f"{weights} is not a readable safetensors file: truncated, corrupt or of another "
                              f"format ({exc})") from None
    return model.eval()


def _expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Our parameter names without the prefix, and their shapes (a model on the meta device: no memory)."""
    with torch.device("meta"):
        model = GPT(config)
    return {name.removeprefix(PREFIX): tuple(p.shape) for name, p in model.named_parameters() if name != TIED}


def _check_tensors(shapes: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> None:
    missing = sorted(expected.keys() - shapes.keys())
    unexpected = sorted(shapes.keys() - expected.keys() - {TIED})
    if missing or unexpected:
        raise GPT2ImportError(
            f"the file does not hold GPT-2's tensors: missing {', '.join(missing[:4]) or 'nothing'}"
            f"{' …' if len(missing) > 4 else ''}; unexpected {', '.join(unexpected[:4]) or 'nothing'}"
            f"{' …' if len(unexpected) > 4 else ''}"
        )
    for name, shape in expected.items():
        if shapes[name] != shape:
            raise GPT2ImportError(f"{name} has shape {list(shapes[name])}; a GPT-2 of this size needs {list(shape)}")
    if TIED in shapes and shapes[TIED] != expected["wte.weight"]:
        raise GPT2ImportError(f"{TIED} has shape {list(shapes[TIED])}, wte.weight {list(expected['wte.weight'])}")


def check_memory(config: GPTConfig) -> None:
    """Refuse, before anything is downloaded or allocated, a model this machine cannot hold
    (or a config GPT cannot build, such as n_embd not divisible by n_head)."""
    needed, available = inference_memory_bytes(config), physical_memory_bytes()
    if available and needed > available:
        raise GPT2ImportError(f"this GPT-2 needs about {needed / 2**30:.1f} GiB of memory to run, but this machine "
                              f"has {available / 2**30:.1f} GiB: choose a smaller size")
    try:
        config.validate(training=False, memory_bytes=available)
    except ValueError as exc:
        raise GPT2ImportError(str(exc)) from None


def check_free_space(folder: Path, needed: int, purpose: str) -> None:
    existing = next((p for p in [folder, *folder.absolute().parents] if p.exists()), None)
    free = shutil.disk_usage(existing).free if existing is not None else None
    if free is not None and free < needed:
        raise GPT2ImportError(f"to {purpose} needs about {needed / 1e9:.1f} GB of disk, but {existing} has "
                              f"{free / 1e9:.1f} GB free")


# --- the whole import -------------------------------------------------------------------


def import_gpt2(
    size: str = "small",
    source: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | bool = False,
) -> Path:
    """GPT-2 as a checkpoint folder: from `source` (a model.safetensors, or its folder) if
    given, else downloaded (`size`). Written to `out`, by default gpt2-<size> in the runs
    folder ($LM_RUNS_DIR, else runs/), where the app finds it. Never overwrites a model."""
    spec = size_spec(size)
    tokenizer = TiktokenTokenizer("r50k_base")  # before any download: offline, it needs its cached rank file
    if source is None:
        _refuse_existing(Path(out) if out else default_folder(size))
        weights = download_gpt2(size, progress)
    else:
        weights = Path(source)
    model = load_gpt2(weights)
    known = known_size(model.config)
    out = Path(out) if out else default_folder(known or "custom")
    _refuse_existing(out)
    check_free_space(out, 4 * parameter_count(model.config), f"write the checkpoint to {out}")
    provenance = {
        "source": "OpenAI's GPT-2 weights in Hugging Face's format, imported, not trained here",
        "model": SIZES[known].label if known else "a model of GPT-2's architecture and tokenizer",
        "hugging_face_repo": spec.repo_id if source is None else None,
        "file": str(weights.absolute()),
        "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return save_checkpoint(out, model, tokenizer, provenance)


def known_size(config: GPTConfig) -> str | None:
    """Which of OpenAI's GPT-2 sizes has this config, if any."""
    return next((name for name, spec in SIZES.items() if spec.config() == config), None)


def runs_folder(name: str) -> Path:
    """The folder `name` in the runs folder, where an import writes by default: $LM_RUNS_DIR,
    else runs/ (the app's runs root too)."""
    return Path(os.environ.get("LM_RUNS_DIR", "runs")) / name


def default_folder(size: str) -> Path:
    """gpt2-<size> in the runs folder."""
    return runs_folder(f"gpt2-{size}")


def _refuse_existing(out: Path) -> None:
    if (out / CONFIG_FILE).exists():  # a checkpoint is complete once its config is written
        raise GPT2ImportError(f"{out} already holds a model; choose another folder or delete it first")
