"""What a run really is, from what it recorded itself: a run started from the command line
(`python -m lm train`) or fine-tuned has no train_config.json, and a run still training has
no best validation loss in its status yet. Its checkpoint's config.json (saved at every
evaluation) names the model it trained, the settings it resolved and its best loss so far;
its metrics hold every validation loss it measured, for a run with no checkpoint saying so.

Cheap enough for the runs table's every refresh: a run the app started names its model in its
options, a run that ended has its best loss in status.json, and a checkpoint is parsed once
per version of its config.json; a growing metrics file is read only when neither has the figure."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from explorer.live_files import run_metrics
from explorer.paths import FileStamp
from lm.checkpoint import CONFIG_FILE, read_config
from lm.run_folder import TRAIN_CONFIG_FILE, read_record

MODEL_KEYS = ("n_layer", "n_head", "n_embd", "block_size")  # the model's shape and context, as the table shows it


@dataclass(frozen=True)
class Recorded:
    options: dict = field(default_factory=dict)  # the TrainConfig: as the app started it, else as its checkpoint records it
    model: dict = field(default_factory=dict)  # MODEL_KEYS as far as known (none before a CLI run's first checkpoint)
    best_val_loss: float | None = None


def best_val_loss(metrics: list[dict]) -> float | None:
    """The lowest validation loss among metrics.jsonl's records; None before the first evaluation."""
    losses = [r["val_loss"] for r in metrics if _is_finite(r.get("val_loss"))]
    return min(losses, default=None)


def recorded(folder: Path, status: dict, active: bool) -> Recorded:
    """The run's settings, model and best validation loss, given its status (lm.run_folder.read_status); `active`: whether it still trains (its metrics grow)."""
    options = read_record(folder / TRAIN_CONFIG_FILE) or {}
    model = {key: options[key] for key in MODEL_KEYS if key in options}
    best = status.get("best_val_loss")  # written when the run ends
    if len(model) < len(MODEL_KEYS) or best is None:  # the command line's defaults, a task's preset, a fine-tune's source
        shape, settings, best_saved = _checkpoint(folder)
        model, options = {**shape, **model}, options or dict(settings)
        best = best if best is not None else best_saved
    if best is None:  # the look the live views share, not a second read of a growing file
        best = best_val_loss(run_metrics(folder, active)[1])
    return Recorded(options, model, best)


def _checkpoint(folder: Path) -> tuple[dict, dict, float | None]:
    """(model shape, TrainConfig, best validation loss) as the run's checkpoint records them;
    empty before it saved one (or unreadable). Shared: do not modify."""
    try:
        stamp = FileStamp.of(folder / CONFIG_FILE)
    except OSError:
        return {}, {}, None
    return _read_checkpoint(stamp)


@lru_cache(maxsize=256)
def _read_checkpoint(stamp: FileStamp) -> tuple[dict, dict, float | None]:
    try:
        config, training = read_config(Path(stamp.path).parent)
    except (ValueError, OSError):  # CheckpointError among them
        return {}, {}, None
    settings, best = training.get("config"), training.get("best_val_loss")
    return ({key: getattr(config, key) for key in MODEL_KEYS}, settings if isinstance(settings, dict) else {},
            float(best) if _is_finite(best) else None)


def _is_finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
