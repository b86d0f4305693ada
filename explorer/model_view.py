"""What a model is made of, from its config alone: its settings and what they mean, its
size and cost, where its parameters are, and its blocks drawn top to bottom."""

from __future__ import annotations

import html

import plotly.graph_objects as go

from explorer.attention_maps import FONT
from lm.model import GPTConfig
from lm.sizing import flops_per_token, parameter_breakdown, parameter_count, training_memory_bytes

CONFIG_MEANINGS = {
    "vocab_size": "different tokens it knows",
    "block_size": "context: the most tokens it reads at once",
    "n_layer": "blocks, one after the other",
    "n_head": "attention heads in each block",
    "n_embd": "numbers that describe each token (the width)",
    "dropout": "share of activations switched off while training",
    "bias": "Linear layers and LayerNorms have biases",
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
    rows.append({"setting": "head size", "value": f"{config.n_embd // config.n_head:,}",
                 "meaning": "n_embd / n_head: the length of each head's q, k and v"})
    return rows


def size_estimates(config: GPTConfig) -> dict[str, str]:
    """What the model costs: memory, and arithmetic per token, from lm.model's formulas."""
    n = parameter_count(config)
    return {
        "Parameters": si(n),
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


def block_diagram_html(config: GPTConfig) -> str:
    """The model drawn top to bottom with its real sizes: tokens in, one block (repeated
    n_layer times) with its two residual adds, next-token probabilities out."""
    C, V, T, L, H = config.n_embd, config.vocab_size, config.block_size, config.n_layer, config.n_head
    parts = parameter_breakdown(config)
    per_block = (parts["attention"] + parts["MLP"]) // L + 2 * C * (1 + int(config.bias))  # + its 2 LayerNorms
    width = f"T × {C:,}"
    block = "".join([
        _box("norm", "LayerNorm", f"{C:,} numbers rescaled per token"),
        _arrow(),
        _box("attention", f"Causal self-attention: {H} heads × {C // H}",
             f"q, k, v: {C:,} → 3 × {C:,} · mix heads: {C:,} → {C:,}"),
        _arrow(),
        _box("add", "+ the block's input", "residual: attention adds to the stream, never replaces it"),
        _arrow(width),
        _box("norm", "LayerNorm"),
        _arrow(),
        _box("mlp", f"MLP: {C:,} → {4 * C:,} → GELU → {C:,}", "each token on its own"),
        _arrow(),
        _box("add", "+ the input of the MLP", "residual again"),
    ])
    repeated = (
        '<div style="border:2px dashed #495057;border-radius:12px;padding:10px 18px;display:flex;'
        'flex-direction:column;align-items:center;gap:2px">'
        f'<div style="font-weight:bold;margin-bottom:4px">× {L} blocks · {si(per_block)} parameters each</div>'
        f"{block}</div>"
    )
    flow = [
        _box("io", f"Token ids: T tokens, T ≤ {T:,}"),
        _arrow(),
        _box("embed", "Token embedding + position embedding",
             f"{V:,} × {C:,} table + {T:,} × {C:,} table"),
        _arrow(width),
        repeated,
        _arrow(width),
        _box("norm", "Final LayerNorm"),
        _arrow(),
        _box("head", f"Head: {C:,} → {V:,}", "reuses the token embedding's table (tied weights)"),
        _arrow(f"T × {V:,} logits"),
        _box("io", "Softmax → next-token probabilities", f"for each position, one over each of the {V:,} tokens"),
    ]
    return (
        '<div class="block-diagram" style="display:flex;flex-direction:column;align-items:center;gap:2px;'
        f'font-size:1.05rem;padding:8px">{"".join(flow)}</div>'
    )
