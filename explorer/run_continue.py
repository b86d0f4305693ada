"""Continue a run that ended: more steps in the same folder, from its last checkpoint, so its
curves go on where they stopped (explorer.runs.continue_run)."""

from __future__ import annotations

import streamlit as st

from explorer import runs
from explorer.plain_text import plain


def default_target(info: runs.RunInfo) -> int:
    """The step to train on to: the planned end for a run stopped early, else twice as far."""
    if info.max_steps and info.step < info.max_steps:
        return info.max_steps
    return max(2 * info.step, info.step + 1)


def continue_control(info: runs.RunInfo) -> None:
    """A popover asking how far to train on; what makes a run impossible to continue is said inside."""
    with st.popover("▶ Continue", help="Train this run on from its last checkpoint: the same curves, more steps."):
        problem = runs.continue_problem(info)
        if problem:
            st.info(f"This run cannot be continued: {problem}.")
            return
        target = st.number_input(
            "Train on to step", min_value=info.step + 1, value=default_target(info), step=max(1, info.step // 2),
            key="train_continue_steps",
            help=f"It has trained {info.step:,} steps. The learning-rate schedule stretches to the new end, "
            "so the rate rises a little again before it decays.",
        )
        if st.button("Continue training", type="primary", key="train_continue"):
            try:
                runs.continue_run(info.name, int(target))
            except runs.RunError as exc:
                st.error(plain(exc))
                return
            st.rerun()  # the whole page: it redraws every second again while the run trains
