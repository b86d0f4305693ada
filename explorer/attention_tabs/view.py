"""What every tab of the Attention page is drawn from: the models with their forward pass
over the text, and the layer and head chosen above the tabs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from explorer.attention_view import AttentionRun
from lm.checkpoint import Checkpoint


@dataclass(frozen=True)
class ModelRun:
    """One model's reading of the text: its last tokens, and how many were cut from the front."""

    checkpoint: Checkpoint
    run: AttentionRun
    dropped: int


@dataclass(frozen=True)
class AttentionView:
    """The models by name (one, or two to compare), the chosen layer and head, and where a tab
    puts its own controls: beside the tabs in presenter view (`controls`), else above its picture."""

    models: dict[str, ModelRun]
    layer: int
    head: int
    controls: DeltaGenerator | None = None

    def side(self) -> DeltaGenerator:
        """The place for this tab's controls."""
        return self.controls if self.controls is not None else st.container()

    @property
    def comparing(self) -> bool:
        return len(self.models) > 1

    def side_by_side(self) -> Iterator[tuple[str, ModelRun, DeltaGenerator]]:
        """Each model with a place to draw it: in columns when comparing."""
        places = st.columns(len(self.models)) if self.comparing else [st.container()]
        for (name, model), place in zip(self.models.items(), places):
            yield name, model, place

    def pick_model(self, key: str) -> str:
        """With two models, which one a tab works on."""
        names = list(self.models)
        return names[0] if not self.comparing else st.radio("Model", names, horizontal=True, key=key)


def shared_shape(models: dict[str, ModelRun]) -> tuple[int, int]:
    """The layers and heads every model has: the choices above the tabs."""
    shapes = [model.run.weights.shape for model in models.values()]
    return min(shape[0] for shape in shapes), min(shape[1] for shape in shapes)
