"""The architecture dial as a training run sets it: presets that turn GPT-2 into the block
of a later family (Llama, Qwen3, Pythia, Gemma 3), as TrainConfig fields, and how those fields
become GPTConfig's switches. A TrainConfig holds plain numbers and words (one flag each
on the command line): 0 stands for "the default" where GPTConfig has None."""

from __future__ import annotations

from dataclasses import dataclass

from lm.config import GATED_MLPS

ARCH_FIELDS = ("position", "rope_base", "rotary_fraction", "norm", "norm_position", "qk_norm", "mlp", "mlp_hidden",
               "n_kv_head", "window", "window_layers", "parallel_residual", "tied_head", "bias", "n_experts",
               "experts_top_k", "moe_aux_weight", "rope_local_base", "scale_embeddings")
KV_GROUP = 2  # the GQA presets give each key/value head this many query heads, where n_head allows


@dataclass(frozen=True)
class Architecture:
    description: str
    options: dict  # TrainConfig fields (ARCH_FIELDS) other than n_kv_head
    grouped: bool = False  # grouped-query attention: n_head / KV_GROUP key/value heads

    def settings(self, n_head: int) -> dict:
        """Every ARCH_FIELDS value this preset sets for a model with `n_head` query heads."""
        kv = n_head // KV_GROUP if self.grouped and n_head % KV_GROUP == 0 else 0
        return {**GPT2_OPTIONS, **self.options, "n_kv_head": kv}


GPT2_OPTIONS = dict(position="learned", rope_base=10000.0, rotary_fraction=1.0, norm="layernorm", norm_position="pre",
                    qk_norm=False, mlp="gelu", mlp_hidden=0, n_kv_head=0, window=0, window_layers="",
                    parallel_residual=False, tied_head=True, bias=True, n_experts=0, experts_top_k=2, moe_aux_weight=0.01,
                    rope_local_base=0.0, scale_embeddings=False)
ARCHITECTURES = {
    "GPT-2": Architecture("learned positions, LayerNorm, GELU, one key/value head per query head, tied head", {}),
    "Llama-style": Architecture(
        "RoPE, RMSNorm, SwiGLU, grouped key/value heads, no biases, untied head",
        dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False, tied_head=False), grouped=True),
    "Qwen3-style": Architecture(
        "Llama's block plus QK-norm, RoPE base 1,000,000, tied head",
        dict(position="rope", rope_base=1_000_000.0, norm="rmsnorm", qk_norm=True, mlp="swiglu", bias=False),
        grouped=True),
    "Mixtral-style": Architecture(
        "Llama's block with a mixture of experts: 8 SwiGLU MLPs a layer, a router sends each token to 2",
        dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False, tied_head=False, n_experts=8, experts_top_k=2),
        grouped=True),
    "Pythia-style": Architecture(
        "GPT-NeoX: rotary on a quarter of each head, parallel attention and MLP, exact GELU, untied head",
        dict(position="rope", rotary_fraction=0.25, mlp="gelu_exact", parallel_residual=True, tied_head=False)),
    "Gemma3-style": Architecture(
        "Qwen3's block with GeGLU, sandwich norms and embeddings × √width; a window (Gemma 3: on 5 layers of "
        "6) turns with RoPE base 10,000, the other layers 1,000,000",
        dict(position="rope", rope_base=1_000_000.0, rope_local_base=10_000.0, norm="rmsnorm", norm_position="sandwich",
             qk_norm=True, mlp="geglu", bias=False, scale_embeddings=True), grouped=True),
}


def matching_architecture(settings: dict, n_head: int) -> str | None:
    """The preset whose switches `settings` has exactly, or None (a mix of one's own)."""
    return next((name for name, arch in ARCHITECTURES.items()
                 if all(settings.get(k, v) == v for k, v in arch.settings(n_head).items())), None)


def swiglu_width(n_embd: int) -> int:
    """A gated MLP's (SwiGLU, GeGLU) width that keeps GPT-2's MLP parameter count (three matrices instead of two:
    2/3 of 4 × n_embd), rounded up to a multiple of 8, as Llama does (to 256)."""
    exact = -(-8 * n_embd // 3)  # rounded up
    return -(-exact // 8) * 8


def window_layer_list(text: str, n_layer: int) -> list[int] | None:
    """"0,2" -> [0, 2]; "" -> None (every layer). Raises ValueError naming window_layers."""
    if not text.strip():
        return None
    try:
        layers = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise ValueError(f"window_layers must list layer numbers separated by commas (0,2), not {text!r}") from None
    if layers[0] < 0 or layers[-1] >= n_layer:
        raise ValueError(f"window_layers must name layers from 0 to {n_layer - 1}, not {text!r}")
    return layers


def model_switches(settings: dict, n_embd: int, n_layer: int) -> dict:
    """GPTConfig's switches for TrainConfig's ARCH_FIELDS values (0 -> None; mlp_hidden 0 with
    a gated MLP -> swiglu_width)."""
    switches = {name: settings[name] for name in ARCH_FIELDS}
    for name in ("n_kv_head", "window", "mlp_hidden", "rope_local_base"):
        switches[name] = switches[name] or None
    if switches["mlp_hidden"] is None and switches["mlp"] in GATED_MLPS:
        switches["mlp_hidden"] = swiglu_width(n_embd)
    switches["window_layers"] = window_layer_list(settings["window_layers"], n_layer)
    return switches
