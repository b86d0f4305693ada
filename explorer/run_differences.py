"""What sets compared runs apart: the training settings on which they differ, named, so an
overlay of loss curves says what it compares ("position: learned vs rope; same data, seed
and everything else")."""

from __future__ import annotations

from dataclasses import MISSING, fields

from explorer.plain_text import plain
from lm.train_config import TrainConfig

NOT_COMPARED = {"out", "threads", "device"}  # where a run was written and ran, not what it learned
SHOWN = 4  # settings named one by one; more are counted
DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}


def setting_differences(options: dict[str, dict]) -> dict[str, list]:
    """{setting: each run's value, in the runs' order} for the settings that differ between
    the runs' TrainConfigs (a setting a run lacks, as the architecture dial's in a run from
    before it, counts as TrainConfig's default: that is how such a run trained)."""
    names = sorted({key for run in options.values() for key in run} - NOT_COMPARED)
    values = {key: [run.get(key, DEFAULTS.get(key)) for run in options.values()] for key in names}
    return {key: found for key, found in values.items() if len(set(map(repr, found))) > 1}


def differences_sentence(options: dict[str, dict]) -> str:
    """One Markdown sentence naming the differences between two or more runs' settings."""
    if len(options) < 2:
        return ""
    if any(not run for run in options.values()):
        return "An imported or older run has no settings recorded to compare."
    found = setting_differences(options)
    if not found:
        return "These runs have the same settings: any difference between the curves is chance."
    named = "; ".join(f"**{key}**: {' vs '.join(plain(v) for v in values)}" for key, values in list(found.items())[:SHOWN])
    more = f" and {len(found) - SHOWN} more settings" if len(found) > SHOWN else ""
    same = "; everything else the same" if len(found) == 1 else ""
    return f"The runs differ in {named}{more}{same}."
