"""A mixture of experts' routing drawn for a class: each layer's text with every token in the
colour of the expert it went to most, how the load spread over the experts, and one token's
choices as a sentence. Data in (lm.moe.Routing), HTML, plotly figures or text out."""

from __future__ import annotations

import html

import plotly.colors
import plotly.graph_objects as go

from explorer.attention_maps import FONT, HOVER
from explorer.charts import PROJECTOR_FONT
from lm.moe import Routing

# Light colours with dark text, as the token chips: readable on a projector. More experts than
# colours reuse them; the number under each chip tells them apart.
EXPERT_COLOURS = plotly.colors.qualitative.Set3
SHOWN_TOKENS = 64  # the last this many tokens a layer: four layers of them fit one screen


def expert_colour(expert: int) -> str:
    return EXPERT_COLOURS[expert % len(EXPERT_COLOURS)]


def choices_text(experts, weights) -> str:
    """One token's choices in one layer: "experts 2 (0.70), 5 (0.30)"."""
    noun = "experts" if len(experts) > 1 else "expert"
    return f"{noun} " + ", ".join(f"{int(e)} ({w:.2f})" for e, w in zip(experts, weights))


def _chip(label: str, experts, weights) -> str:
    top = int(experts[0])
    return (f'<span title="{html.escape(choices_text(experts, weights))}" style="display:inline-block;'
            f'background:{expert_colour(top)};color:#212529;border:1px solid rgba(0,0,0,.15);border-radius:4px;'
            f'padding:1px 3px;margin:2px 1px;white-space:pre;line-height:1.2;text-align:center">{html.escape(label)}'
            f'<span style="display:block;font-size:.7em;color:#343a40">{top}</span></span>')


def routing_html(routing: Routing, labels: tuple[str, ...]) -> str:
    """One paragraph a layer: the text's tokens, each in the colour of the expert with the most
    weight (its number under it); hovering a token lists every expert it went to."""
    experts, weights = routing.experts.numpy(), routing.weights.numpy()
    start = max(0, len(labels) - SHOWN_TOKENS)
    note = (f'<p style="color:#495057;margin:0">the last {SHOWN_TOKENS} of {len(labels)} tokens</p>'
            if start else "")
    rows = [f'<div style="display:flex;align-items:flex-start;margin-bottom:.5rem">'
            f'<b style="flex:0 0 4.2rem;padding-top:.3rem">layer {layer}</b><div>'
            + "".join(_chip(labels[t], experts[layer, t], weights[layer, t]) for t in range(start, len(labels)))
            + "</div></div>" for layer in range(experts.shape[0])]
    return f'<div style="font-size:1.05rem;line-height:1.6">{note}{"".join(rows)}</div>'


def load_figure(routing: Routing, height: int = 360) -> go.Figure:
    """A bar a layer, split by the share of its choices each expert got (its colour, as the
    tokens'): an even load is n equal parts."""
    load = routing.load.numpy()
    L, n = load.shape
    layers = [f"layer {layer}" for layer in range(L)]
    fig = go.Figure([go.Bar(
        y=layers, x=load[:, e].tolist(), orientation="h", name=f"expert {e}", marker=dict(color=expert_colour(e),
                                                                                 line=dict(color="#495057", width=1)),
        text=[f"{e}" for _ in range(L)], textposition="inside", insidetextanchor="middle", textangle=0,
        hovertemplate=f"expert {e}, %{{y}}: %{{x:.0%}} of the choices<extra></extra>",
    ) for e in range(n)])
    fig.update_layout(
        barmode="stack", title=f"Load (even: {1 / n:.0%} each)", font=FONT, height=height,
        showlegend=False, margin=dict(l=70, r=20, t=50, b=40), hoverlabel=HOVER,
        xaxis=dict(range=[0, 1.001], tickvals=[0, 0.5, 1], tickformat=".0%", tickfont=PROJECTOR_FONT),
        yaxis=dict(autorange="reversed", tickfont=PROJECTOR_FONT),
    )
    return fig


def token_route_lines(routing: Routing, position: int) -> list[str]:
    """One line a layer: the experts the token at `position` went through, with their weights."""
    experts, weights = routing.experts.numpy(), routing.weights.numpy()
    return [f"layer {layer} → {choices_text(experts[layer, position], weights[layer, position])}"
            for layer in range(experts.shape[0])]
