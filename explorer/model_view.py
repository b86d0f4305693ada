"""What a model is made of, from its config alone: its settings and what they mean, its
size and cost, where its parameters are, and its blocks drawn top to bottom."""

from __future__ import annotations

import html

import plotly.graph_objects as go

from explorer.architecture_text import attention_kind, kv_sharing, why
from explorer.attention_maps import FONT
from lm.model import GPTConfig
from lm.sizing import (
    active_parameter_count, flops_per_token, norm_count, parameter_breakdown, parameter_count, training_memory_bytes,
)

CONFIG_MEANINGS = {
    "vocab_size": "different tokens it knows",
    "block_size": "context: the most tokens it reads at once",
    "n_layer": "blocks, one after the other",
    "n_head": "attention heads in each block",
    "n_embd": "numbers that describe each token (the width)",
    "dropout": "share of activations switched off while training",
    "bias": "Linear layers and norms have biases",
}


def si(value: float, unit: str = "") -> str:
    """3 significant digits with a k/M/G/T prefix: 124 M, 1.49 G."""
    for prefix, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def _config_value(value) -> str:
    return str(value) if isinstance(value, (bool, float)) else f"{value:,}"


def config_rows(config: GPTConfig) -> list[dict]:
    values = config.to_dict()
    rows = [
        {"setting": name, "value": _config_value(values[name]), "meaning": meaning}
        for name, meaning in CONFIG_MEANINGS.items()
    ]
    rows.append({"setting": "head size", "value": f"{config.head_dim:,}",
                 "meaning": "the length of each head's q, k and v (n_embd / n_head unless set)"})
    return rows + architecture_rows(config)


def architecture_rows(config: GPTConfig) -> list[dict]:
    """The architecture dial's settings, each with why."""
    rows = [{"setting": name, "value": str(getattr(config, name)), "meaning": why(name, getattr(config, name))}
            for name in ("position", "norm", "norm_position", "qk_norm", "mlp")]
    if config.rotary_dims:
        rows.append({"setting": "rotary dims", "value": f"{config.rotary_dims} of {config.head_dim}",
                     "meaning": f"dimensions of each head RoPE turns, {rope_bases(config)}"})
    if config.attn_scale_size:
        rows.append({"setting": "attention scale", "value": f"1/√{config.attn_scale_size}",
                     "meaning": "scores are QKᵀ/√ of this instead of the head size (Gemma 3's query_pre_attn_scalar)"})
    if config.n_experts:
        rows.append({"setting": "experts", "value": f"{config.experts_top_k} of {config.n_experts} a token",
                     "meaning": why("n_experts", config.n_experts)})
    if config.scale_embeddings:
        rows.append({"setting": "embedding scale", "value": f"√{config.n_embd:,}",
                     "meaning": "token embeddings are multiplied by √width on the way in (Gemma)"})
    rows += [
        {"setting": "MLP width", "value": f"{config.mlp_width:,}", "meaning": "units in each MLP"},
        {"setting": "key/value heads", "value": f"{config.kv_heads}",
         "meaning": kv_sharing(config.n_head, config.kv_heads)},
        {"setting": "window", "value": "—" if not config.window else f"{config.window:,}",
         "meaning": why("window", config.window)},
        {"setting": "parallel residual", "value": str(config.parallel_residual),
         "meaning": why("parallel_residual", config.parallel_residual)},
        {"setting": "tied head", "value": str(config.tied_head), "meaning": why("tied_head", config.tied_head)},
    ]
    return rows


def size_estimates(config: GPTConfig) -> dict[str, str]:
    """What the model costs: memory, and arithmetic per token, from lm.model's formulas."""
    n, active = parameter_count(config), active_parameter_count(config)
    return {
        "Parameters": si(n),
        **({"Active per token": si(active)} if active != n else {}),  # a mixture of experts
        "Weights (fp32)": si(4 * n, "B"),
        "Training memory": si(training_memory_bytes(config), "B"),
        "Forward FLOPs": si(flops_per_token(config, training=False)),
        "Training FLOPs": si(flops_per_token(config, training=True)),
    }


def parameter_figure(config: GPTConfig) -> go.Figure:
    """Where the parameters are: one bar per part of the model."""
    parts = parameter_breakdown(config)
    total = sum(parts.values())
    names = list(parts)[::-1]  # plotly draws the first bar at the bottom
    counts = [parts[name] for name in names]
    fig = go.Figure(
        go.Bar(
            x=counts, y=names, orientation="h", marker_color="#4263eb",
            text=[f"{si(c)} · {c / total:.0%}" for c in counts], textposition="auto",
            hovertemplate="%{y}: %{x:,} parameters<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Where the {si(total)} parameters are", font=FONT, height=340,
        xaxis=dict(title=dict(text="parameters", font=FONT)), margin=dict(l=20, r=20, t=60, b=40),
    )
    return fig


_BOX = (
    "border:2px solid {border};background:{fill};border-radius:8px;padding:6px 14px;"
    "text-align:center;min-width:22em;color:#212529"
)
_COLOURS = {
    "io": ("#868e96", "#f1f3f5"),
    "embed": ("#f08c00", "#fff3bf"),
    "norm": ("#adb5bd", "#f8f9fa"),
    "attention": ("#1c7ed6", "#d0ebff"),
    "mlp": ("#2f9e44", "#d3f9d8"),
    "add": ("#868e96", "#ffffff"),
    "head": ("#c2255c", "#ffdeeb"),
}


def _box(kind: str, title: str, detail: str = "") -> str:
    border, fill = _COLOURS[kind]
    detail_html = f'<div style="font-size:.85em;color:#495057">{html.escape(detail)}</div>' if detail else ""
    return f'<div style="{_BOX.format(border=border, fill=fill)}"><b>{html.escape(title)}</b>{detail_html}</div>'


def _arrow(shape: str = "") -> str:
    note = f' <span style="font-size:.8em;color:#495057">{html.escape(shape)}</span>' if shape else ""
    return f'<div style="font-size:1.3em;line-height:1.2;color:#495057">↓{note}</div>'


def _norm_name(config: GPTConfig) -> str:
    return "RMSNorm" if config.norm == "rmsnorm" else "LayerNorm"


def rope_bases(config: GPTConfig) -> str:
    """RoPE's base in words: one, or the windowed layers' and the others' (Gemma 3)."""
    if config.rope_local_base is None or not config.window:
        return f"base {config.rope_base:g}"
    return f"base {config.rope_local_base:g} in windowed layers, {config.rope_base:g} in the others"


def attention_box(config: GPTConfig) -> str:
    """Attention as configured: its heads, key/value heads, positions, QK-norm and window."""
    C, H, D, kv = config.n_embd, config.n_head, config.head_dim, config.kv_heads
    heads = f"{H} heads × {D}" if kv == H else f"{H} query heads × {D}, {kv} key/value head{'s' * (kv > 1)}"
    extras = [attention_kind(H, kv) if kv != H else ""]
    if config.rotary_dims:
        share = "" if config.rotary_dims == D else f" on {config.rotary_dims} of {D} dimensions"
        extras.append(f"RoPE turns q and k{share} ({rope_bases(config)})")
    if config.qk_norm:
        extras.append("QK-norm")
    if config.attn_scale_size:
        extras.append(f"scores ÷ √{config.attn_scale_size}")
    if config.window:
        listed = config.window_layers
        layers = "" if listed is None else f" in layer{'s' * (len(listed) != 1)} {', '.join(map(str, listed))}"
        extras.append(f"sliding window of {config.window:,}{layers}")
    detail = f"q, k, v: {C:,} → {H * D:,} + 2 × {kv * D:,} · mix heads: {H * D:,} → {C:,}"
    return _box("attention", f"Causal self-attention: {heads}", " · ".join([detail, *filter(None, extras)]))


def mlp_box(config: GPTConfig) -> str:
    C, F = config.n_embd, config.mlp_width
    if config.gated_mlp:
        name, activation = ("SwiGLU", "SiLU") if config.mlp == "swiglu" else ("GeGLU", "GELU")
        title = f"{name} MLP: {C:,} → 2 × {F:,} → {activation}(gate) × up → {C:,}"
        detail = "each token on its own; a gate decides how much of each unit passes"
    else:
        activation = {"gelu": "GELU", "gelu_exact": "GELU (exact)", "relu2": "ReLU²"}[config.mlp]
        title, detail = f"MLP: {C:,} → {F:,} → {activation} → {C:,}", "each token on its own"
    if config.n_experts:  # lm.moe
        title = f"{config.n_experts} experts, each a {title}"
        detail = (f"a router scores the experts for each token and sends it to {config.experts_top_k}; "
                  "their outputs are mixed by its weights")
    return _box("mlp", title, detail)


def _column(*parts: str) -> str:
    return f'<div style="display:flex;flex-direction:column;align-items:center;gap:2px">{"".join(parts)}</div>'


def block_html(config: GPTConfig) -> str:
    """One block in its residual layout: pre-norm (GPT-2, Llama), sandwich (Gemma: pre-norm
    with each sublayer's output normalized too), post-norm (the original Transformer) or
    parallel attention and MLP (Pythia)."""
    norm, width = _norm_name(config), f"T × {config.n_embd:,}"
    if config.parallel_residual:
        side_by_side = (
            '<div style="display:flex;gap:10px;align-items:flex-start">'
            + _column(_box("norm", norm), _arrow(), attention_box(config))
            + _column(_box("norm", norm), _arrow(), mlp_box(config)) + "</div>"
        )
        return side_by_side + _arrow() + _box(
            "add", "+ the block's input + attention + MLP", "parallel residual: both read the same input, one add")
    if config.norm_position == "post":
        return "".join([
            attention_box(config), _arrow(), _box("add", "+ the block's input"), _arrow(),
            _box("norm", norm, "after the add: the stream itself is normalized"), _arrow(width), mlp_box(config),
            _arrow(), _box("add", "+ the input of the MLP"), _arrow(), _box("norm", norm),
        ])
    def output_norm(sublayer: str) -> list[str]:
        if config.norm_position != "sandwich":
            return []
        return [_box("norm", norm, f"on {sublayer}'s output, before the add (sandwich)"), _arrow()]

    return "".join([
        _box("norm", norm, f"{config.n_embd:,} numbers rescaled per token"), _arrow(), attention_box(config), _arrow(),
        *output_norm("attention"),
        _box("add", "+ the block's input", "residual: attention adds to the stream, never replaces it"),
        _arrow(width), _box("norm", norm), _arrow(), mlp_box(config), _arrow(), *output_norm("the MLP"),
        _box("add", "+ the input of the MLP", "residual again"),
    ])


def _ends(config: GPTConfig) -> tuple[str, str]:
    """The embedding box and the head box: positions learned or rotary, head tied or untied."""
    C, V, T = config.n_embd, config.vocab_size, config.block_size
    if config.scale_embeddings:
        embed = _box("embed", f"Token embedding × √{C:,}", f"{V:,} × {C:,} table, scaled up on the way in (Gemma)"
                     + (f" + {T:,} × {C:,} position table" if config.position == "learned" else " · RoPE turns q and k"))
    elif config.position == "learned":
        embed = _box("embed", "Token embedding + position embedding", f"{V:,} × {C:,} table + {T:,} × {C:,} table")
    else:
        embed = _box("embed", "Token embedding", f"{V:,} × {C:,} table · no position table: RoPE turns q and k instead")
    owner = ("reuses the token embedding's table (tied weights)" if config.tied_head
             else f"an output head of its own: a {C:,} × {V:,} matrix (untied)")
    return embed, _box("head", f"Head: {C:,} → {V:,}", owner)


def block_diagram_html(config: GPTConfig) -> str:
    """The model drawn top to bottom with its real sizes and its own architecture: tokens in,
    one block (repeated n_layer times) in its residual layout, next-token probabilities out."""
    V, T, L = config.vocab_size, config.block_size, config.n_layer
    parts = parameter_breakdown(config)
    has_final = config.norm_position != "post"  # post-norm blocks end normalized already
    norm = parts.get("layer norms", 0) // norm_count(config)  # one norm's parameters
    block_norms = (norm_count(config) - has_final) // L  # lm.sizing's count, less the final norm
    per_block = sum(parts.get(part, 0) for part in ("attention", "MLP", "router")) // L + block_norms * norm
    width = f"T × {config.n_embd:,}"
    repeated = (
        '<div style="border:2px dashed #495057;border-radius:12px;padding:10px 18px;display:flex;'
        'flex-direction:column;align-items:center;gap:2px">'
        f'<div style="font-weight:bold;margin-bottom:4px">× {L} blocks · {si(per_block)} parameters each</div>'
        f"{block_html(config)}</div>"
    )
    embed, head = _ends(config)
    final = [_box("norm", f"Final {_norm_name(config)}"), _arrow()] if has_final else []
    flow = [
        _box("io", f"Token ids: T tokens, T ≤ {T:,}"), _arrow(), embed, _arrow(width), repeated, _arrow(width),
        *final, head, _arrow(f"T × {V:,} logits"),
        _box("io", "Softmax → next-token probabilities", f"for each position, one over each of the {V:,} tokens"),
    ]
    return (
        '<div class="block-diagram" style="display:flex;flex-direction:column;align-items:center;gap:2px;'
        f'font-size:1.05rem;padding:8px">{"".join(flow)}</div>'
    )
