"""One head, step by step: a query's row of attention with its arithmetic written out,
and how its output is mixed from the value vectors. Data in, rows and figures out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from explorer.attention_maps import FONT, TOKEN_FONT, plotly_text
from explorer.attention_view import LayerSteps

MIX_ROWS = 12  # value vectors drawn one by one when a query mixes many


def query_rows(steps: LayerSteps, head: int, query: int) -> list[dict]:
    """One query's row of attention, key by key, with the arithmetic written out: q·k; the
    model's score, which is q·k/√d; e^(score − the row's max); and the model's weight, which is
    that over the row's sum. Keys after the query are masked and get no row."""
    q = steps.queries[head, query]
    keys = steps.keys[head, : query + 1]
    scores = steps.scores[head, query, : query + 1]
    exps = np.exp(scores - scores.max())
    weights = steps.weights[head, query, : query + 1]
    return [
        {
            "key": f"#{j} {steps.labels[j]}",
            "q·k": float(q @ keys[j]),
            "score": float(scores[j]),
            "e^(score − max)": float(exps[j]),
            "weight": float(weights[j]),
        }
        for j in range(query + 1)
    ]


@dataclass(frozen=True)
class ValueMix:
    """How one query's output is built: rows of weight × value vector that add up to it."""

    labels: list[str]  # what each row is, e.g. "0.42 × v of #3 ·the"
    rows: np.ndarray  # [rows, head size]: each a value vector scaled by its weight
    output: np.ndarray  # [head size]: the model's own output for this query and head

    @property
    def error(self) -> float:
        """Largest gap between the sum of the rows and the model's output (rounding only)."""
        return float(np.abs(self.rows.sum(0) - self.output).max())


def value_mix(steps: LayerSteps, head: int, query: int, top: int = MIX_ROWS) -> ValueMix:
    """output_i = Σ_j w_ij·v_j. The `top` keys with the largest weights get a row each (in
    text order); the rest are summed into one row, so the rows still add up to the output."""
    weights = steps.weights[head, query, : query + 1].astype(np.float64)
    weighted = weights[:, None] * steps.values[head, : query + 1]
    shown = np.sort(np.argsort(-weights, kind="stable")[:top])
    rest = np.setdiff1d(np.arange(query + 1), shown)
    labels = [f"{weights[j]:.2f} × v of #{j} {steps.labels[j]}" for j in shown]
    rows = [weighted[j] for j in shown]
    if len(rest):
        labels.append(f"the other {len(rest)} keys' w × v (weights add to {weights[rest].sum():.2f})")
        rows.append(weighted[rest].sum(0))
    return ValueMix(labels, np.array(rows), steps.outputs[head, query].astype(np.float64))


def value_mix_figure(mix: ValueMix) -> go.Figure:
    """The rows of weight × value, a gap, then their sum: the head's output for the query."""
    z = np.vstack([mix.rows, np.full(mix.rows.shape[1], np.nan), mix.output])
    names = [plotly_text(label) for label in mix.labels] + [" ", "= output"]
    limit = float(np.nanmax(np.abs(z))) or 1.0
    annotate = z.shape[1] <= 16  # a full-width row has room for 16 numbers
    fig = go.Figure(
        go.Heatmap(
            z=z, y=names, colorscale="RdBu", zmin=-limit, zmax=limit, hoverongaps=False,
            text=[["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in z] if annotate else None,
            texttemplate="%{text}" if annotate else None, textfont=dict(size=12), xgap=1, ygap=1,
            colorbar=dict(title=dict(text="value", side="right", font=FONT)),
            hovertemplate="%{y}<br>dimension %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(type="category", autorange="reversed", tickfont=TOKEN_FONT)
    fig.update_xaxes(title="dimension of the head's vectors", title_font=FONT)
    fig.update_layout(
        font=FONT, height=140 + 30 * len(names), margin=dict(l=20, r=20, t=30, b=20),
        plot_bgcolor="white",
    )
    return fig
