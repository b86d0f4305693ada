"""Chart builders: data in, plotly figure out, so tests can read the figure without a server."""

from __future__ import annotations

from itertools import accumulate

import plotly.graph_objects as go

PROJECTOR_FONT = dict(size=16)


def compression_curve(merge_counts: list[int], total_bytes: int) -> list[float]:
    """Bytes per token on the training text after 0, 1, …, n merges.

    Each merge replaces `count` pairs by one token, so the text shrinks by exactly
    `count` tokens: no re-encoding needed."""
    return [total_bytes / (total_bytes - removed) for removed in accumulate(merge_counts, initial=0)]


def compression_figure(merge_counts: list[int], total_bytes: int, at_merge: int | None = None) -> go.Figure:
    curve = compression_curve(merge_counts, total_bytes)
    fig = go.Figure(
        go.Scatter(
            x=list(range(len(curve))),
            y=curve,
            mode="lines",
            line=dict(width=3),
            name="bytes per token",
            hovertemplate="after %{x} merges: %{y:.2f} bytes per token<extra></extra>",
        )
    )
    if at_merge is not None:
        fig.add_vline(x=at_merge, line_dash="dash", line_color="#c92a2a")
    fig.update_layout(
        title="Compression as merges are learned",
        xaxis_title="number of merges",
        yaxis_title="bytes per token (training text)",
        font=PROJECTOR_FONT,
        height=380,
        margin=dict(l=60, r=20, t=60, b=60),
    )
    return fig
