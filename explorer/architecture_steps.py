"""What the architecture dial changes inside one head, for the step-through: RoPE's
rotation of the chosen query and key (before and after, pair by pair), which query heads
share the chosen head's key/value head (GQA), and what a sliding window hides. Data in,
figures, HTML and sentences out."""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from explorer.architecture_text import kv_groups, kv_head_of
from explorer.attention_maps import FONT
from explorer.attention_view import LayerSteps
from lm.config import GPTConfig
from lm.rope import speeds, unrotate

PAIRS_DRAWN = 4  # the fastest-turning pairs: the slow ones barely move over a short text


@dataclass(frozen=True)
class Rotation:
    """One query and one key of a head, before and after RoPE turned them."""

    query: int  # positions
    key: int
    q_before: np.ndarray  # [head size]
    q_after: np.ndarray
    k_before: np.ndarray
    k_after: np.ndarray
    speeds: np.ndarray  # [rotary dims / 2] radians per position of each pair
    score_after: float  # q·k/√d as the model scores it
    score_before: float  # the same without the rotation: what it would be with no positions

    @property
    def half(self) -> int:
        return len(self.speeds)


def rope_rotation(steps: LayerSteps, config: GPTConfig, head: int, query: int, key: int) -> Rotation:
    """The chosen query and key as the model scored them (rotated), and turned back."""
    q_after, k_after = steps.queries[head, query], steps.keys[head, key]
    positions = torch.tensor([query, key])
    base = config.rope_base_of(steps.layer)  # Gemma 3: windowed layers turn with a base of their own
    before = unrotate(torch.from_numpy(np.stack([q_after, k_after])), positions, config.rotary_dims, base)
    q_before, k_before = before.numpy()
    scale, turns = np.sqrt(steps.scale_size), speeds(config.rotary_dims, base).numpy()
    return Rotation(query, key, q_before, q_after, k_before, k_after, turns,
                    float(q_after @ k_after / scale), float(q_before @ k_before / scale))


def _arrow(fig: go.Figure, vector: tuple[float, float], name: str, colour: str, dash: str, column: int,
           legend: bool) -> None:
    fig.add_trace(go.Scatter(
        x=[0, vector[0]], y=[0, vector[1]], mode="lines+markers", name=name, legendgroup=name, showlegend=legend,
        line=dict(color=colour, dash=dash, width=3), marker=dict(size=[0, 10], color=colour),
        hovertemplate=f"{html.escape(name)}: (%{{x:.3f}}, %{{y:.3f}})<extra></extra>",
    ), row=1, col=column)


def rope_figure(rotation: Rotation, query_label: str, key_label: str) -> go.Figure:
    """The fastest pairs of dimensions (i, i + half) as arrows in their plane: the query
    turned by its position × the pair's speed, the key by its own."""
    pairs = min(PAIRS_DRAWN, rotation.half)
    fig = make_subplots(rows=1, cols=pairs, subplot_titles=[
        f"dims {i} & {i + rotation.half}<br>{rotation.speeds[i]:.2g} rad/token" for i in range(pairs)])
    for i in range(pairs):
        dims = [i, i + rotation.half]
        for vector, name, colour, dash in (
            (rotation.q_before, f"q of #{rotation.query} {query_label}, before", "#74c0fc", "dot"),
            (rotation.q_after, f"q, turned {rotation.query} × speed", "#1c7ed6", "solid"),
            (rotation.k_before, f"k of #{rotation.key} {key_label}, before", "#ffc078", "dot"),
            (rotation.k_after, f"k, turned {rotation.key} × speed", "#e8590c", "solid"),
        ):
            _arrow(fig, tuple(vector[dims]), name, colour, dash, i + 1, legend=i == 0)
        reach = 1.1 * max(np.abs(v[dims]).max() for v in (rotation.q_before, rotation.k_before)) + 1e-9
        fig.update_xaxes(range=[-reach, reach], zeroline=True, row=1, col=i + 1)
        fig.update_yaxes(range=[-reach, reach], zeroline=True, row=1, col=i + 1)
    fig.update_layout(font=FONT, height=400, margin=dict(l=20, r=20, t=110, b=20),
                      legend=dict(orientation="h", y=-0.1), title="RoPE turns each pair of dimensions by its position")
    return fig


def rope_explanation(rotation: Rotation) -> str:
    distance = rotation.query - rotation.key
    return (
        f"#### RoPE: positions as rotations\n"
        f"Before scoring, each pair of dimensions of q and k turns by its position times the pair's speed "
        f"(fast pairs first, the slowest {rotation.speeds[-1]:.2g} rad/token). Query #{rotation.query} and key "
        f"#{rotation.key} turned by different angles; their score depends only on the difference, {distance} "
        f"token{'s' * (distance != 1)}: the same two tokens further along the text score the same.\n\n"
        f"Score with the rotation (the model's): **{rotation.score_after:.3f}**; without it, "
        f"{rotation.score_before:.3f}."
    )


def kv_groups_html(n_head: int, kv_heads: int, head: int) -> str:
    """The query heads in a row, coloured by the key/value head they share; the chosen one outlined."""
    colours = ["#d0ebff", "#d3f9d8", "#fff3bf", "#ffdeeb", "#e5dbff", "#ffe8cc", "#c3fae8", "#f1f3f5"]
    boxes = []
    for group, heads in enumerate(kv_groups(n_head, kv_heads)):
        cells = "".join(
            f'<div style="padding:4px 10px;border-radius:6px;background:{colours[group % len(colours)]};'
            f'border:{"3px solid #c2255c" if h == head else "1px solid #868e96"};color:#212529">q head {h}</div>'
            for h in heads)
        boxes.append(f'<div style="display:flex;flex-direction:column;align-items:center;gap:4px">'
                     f'<div style="display:flex;gap:4px">{cells}</div><div style="font-size:.9em">↑ k, v head {group}</div></div>')
    return f'<div class="kv-groups" style="display:flex;flex-wrap:wrap;gap:16px;padding:6px 0">{"".join(boxes)}</div>'


def kv_explanation(n_head: int, kv_heads: int, head: int) -> str:
    group = kv_head_of(head, n_head, kv_heads)
    others = [h for h in kv_groups(n_head, kv_heads)[group] if h != head]
    shared = (f"the same keys and values as query head{'s' * (len(others) > 1)} {', '.join(map(str, others))}"
              if others else "keys and values of its own")
    return (f"#### Grouped key/value heads\n{n_head} query heads share {kv_heads} key/value "
            f"head{'s' * (kv_heads > 1)}: head {head} scores its own queries against key/value head {group}, "
            f"{shared}. Only the key/value heads are cached while generating: {n_head // kv_heads}× less memory.")


def window_explanation(window: int) -> str:
    return (f"This layer has a **sliding window of {window}**: a query sees itself and the {window - 1} tokens "
            f"before it. Keys further back are masked too (grey): a band along the diagonal. Information from "
            f"further back still arrives, passed on by earlier layers.")
