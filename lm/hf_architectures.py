"""How each Hugging Face architecture maps onto lm.GPT: its config.json as GPTConfig
switches (ARCHITECTURES) and, per tensor of ours, the file's tensors it is made from and how
(SOURCES). lm.hf_import reads the folder and checks the files against these tables.
Known: Llama, Mistral, Qwen3, GPT-NeoX (Pythia) and Gemma 3 (text, gemma3_text).

Hugging Face's Linear stores a weight [out, in], ours [in, out] (lm.attention.Linear), so
every projection is transposed; q, k and v go side by side into one c_attn, as do SwiGLU's
gate and up into c_fc; GPT-NeoX interleaves q, k, v head by head and is regrouped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from lm.checkpoint import TIED
from lm.config import GPTConfig

DEFAULT_CONTEXT = 2048  # Qwen3 trains 40,960 positions: a KV cache that long takes GBs; --context to change


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
    if types is not None and not isinstance(types, list):
        raise HFImportError(f"config.json's layer_types must be a list of each layer's kind, not {types!r}")
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


def gemma_rope(hf: dict) -> dict:
    """Gemma 3's two rotary bases: rope_theta for the global layers, rope_local_base_freq for the
    windowed ones (transformers 5 writes them per layer type in rope_parameters)."""
    params = hf.get("rope_parameters") or {}
    if "full_attention" in params:
        full, local = params["full_attention"] or {}, params.get("sliding_attention") or {}
    else:
        full, local = {**params, **(hf.get("rope_scaling") or {})}, {}
    for layers, settings in (("global", full), ("local", local)):
        kind = settings.get("rope_type", settings.get("type", "default"))
        if kind != "default":
            raise HFImportError(f"config.json asks for {kind!r} rotary scaling in the {layers} layers; lm.GPT "
                                "computes plain RoPE only (Gemma 3 270M and 1B have none)")
    return dict(position="rope", rope_base=float(full.get("rope_theta", hf.get("rope_theta", 1_000_000.0))),
                rope_local_base=float(local.get("rope_theta", hf.get("rope_local_base_freq", 10_000.0))))


def whole_number(hf: dict, name: str, default: int | None = None) -> int:
    """config.json's `name` as a positive whole number (256.0 is 256), or a clear error
    (also where it is absent and there is no default)."""
    if default is None and name not in hf:
        raise HFImportError(f"config.json has no {name}")
    value = hf.get(name, default)
    whole = isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer()
    if not whole or value < 1:
        raise HFImportError(f"{name} is {value!r}; lm.GPT takes a positive whole number")
    return int(value)


def gemma_config(hf: dict) -> dict:
    """Gemma 3 (text): sandwich RMSNorms, GeGLU, QK-norm, embeddings × √width, its own attention
    scale, and five windowed layers to one global by default (sliding_window_pattern)."""
    activation = hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"
    refused = {"hidden_activation": activation not in ("gelu_pytorch_tanh", "gelu_new"),
               "attn_logit_softcapping": hf.get("attn_logit_softcapping") is not None,
               "final_logit_softcapping": hf.get("final_logit_softcapping") is not None,
               "use_bidirectional_attention": bool(hf.get("use_bidirectional_attention")),
               "attention_bias": bool(hf.get("attention_bias"))}
    if any(refused.values()):
        raise HFImportError(f"config.json sets {', '.join(k for k, v in refused.items() if v)}, which lm.GPT does "
                            "not compute (it has tanh GELU, no softcapping, causal attention and no biases)")
    n_head, n_embd = hf["num_attention_heads"], hf["hidden_size"]
    head_size = hf.get("head_dim") or n_embd // n_head
    scale = whole_number(hf, "query_pre_attn_scalar", head_size)
    types = hf.get("layer_types")
    if not types:
        pattern = whole_number(hf, "sliding_window_pattern", hf.get("_sliding_window_pattern", 6))
        types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(hf["num_hidden_layers"])]
    return dict(n_kv_head=hf.get("num_key_value_heads") or n_head, mlp="geglu", mlp_hidden=hf["intermediate_size"],
                norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6), norm_position="sandwich", qk_norm=True,
                head_size=None if head_size * n_head == n_embd else head_size, bias=False, scale_embeddings=True,
                attn_scale_size=None if scale == head_size else scale,
                tied_head=bool(hf.get("tie_word_embeddings", True)),  # Gemma ties by default; its configs may omit it
                **gemma_rope(hf), **window_settings({**hf, "layer_types": types}))


ARCHITECTURES = {"llama": llama_config, "mistral": llama_config, "qwen3": llama_config, "gpt_neox": neox_config,
                 "gemma3_text": gemma_config}


def gpt_config(hf: dict, context: int | None = None) -> GPTConfig:
    """The GPTConfig a Hugging Face config.json describes, its context cut to `context`
    (default: the model's, at most DEFAULT_CONTEXT)."""
    kind = hf.get("model_type")
    if kind not in ARCHITECTURES:
        raise HFImportError(f"config.json describes a {kind!r} model; this importer knows "
                            f"{', '.join([*ARCHITECTURES, 'gpt2'])}")
    trained = whole_number(hf, "max_position_embeddings", DEFAULT_CONTEXT)
    if context is not None and not 0 < context <= trained:
        raise HFImportError(f"--context must be between 1 and the {trained:,} positions the model was trained on")
    # checked before the architecture's mapping divides hidden_size by num_attention_heads
    names = dict(vocab_size="vocab_size", n_layer="num_hidden_layers", n_head="num_attention_heads", n_embd="hidden_size")
    sizes = {ours: whole_number(hf, theirs) for ours, theirs in names.items()}
    try:
        dial = ARCHITECTURES[kind](hf)
    except KeyError as exc:
        raise HFImportError(f"config.json has no {exc.args[0]}") from None
    except HFImportError:
        raise
    except (TypeError, ValueError, AttributeError) as exc:  # a string where a number belongs, a list for a table ...
        raise HFImportError(f"config.json has a value of the wrong type for a {kind} model ({exc})") from None
    return GPTConfig(**sizes, block_size=context or min(trained, DEFAULT_CONTEXT), dropout=0.0,
                     **{"tied_head": bool(hf.get("tie_word_embeddings", False)), **dial})


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


def plus_one(name: str, size: int) -> Source:
    """Gemma's RMSNorm multiplies by (1 + w); ours by its weight, which is then 1 + w."""
    return Source((name,), ((size,),), lambda w: 1.0 + w)


def gemma_sources(c: GPTConfig) -> dict[str, Source]:
    """Named as Llama's, but with four norms a block (sandwich) and every norm's scale stored as w for (1 + w)."""
    sources = llama_sources(c) | {"transformer.ln_f.weight": plus_one("model.norm.weight", c.n_embd)}
    norms = {"ln_1": "input_layernorm", "ln_attn_out": "post_attention_layernorm",
             "ln_2": "pre_feedforward_layernorm", "ln_mlp_out": "post_feedforward_layernorm"}
    for i in range(c.n_layer):
        ours, theirs = f"transformer.h.{i}.", f"model.layers.{i}."
        sources |= {f"{ours}{o}.weight": plus_one(f"{theirs}{t}.weight", c.n_embd) for o, t in norms.items()}
        sources |= {f"{ours}attn.{p}_norm.weight": plus_one(f"{theirs}self_attn.{p}_norm.weight", c.head_dim)
                    for p in "qk"}
    return sources


SOURCES = {"llama": llama_sources, "mistral": llama_sources, "qwen3": llama_sources, "gpt_neox": neox_sources,
           "gemma3_text": gemma_sources}
