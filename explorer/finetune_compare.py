"""Before and after a fine-tune, from its evaluation.json (the trainer measures the starting
model and the trained one on the same held-out examples): accuracy and the confusion matrix
side by side for a classifier, with a box to type a message into; for instruction tuning and
DPO the same prompts answered before and after, beside the expected answer."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from explorer.finetune_charts import confusion_figure, probability_figure
from explorer.paths import FileStamp
from explorer.plain_text import plain
from explorer.url_state import BIND, bind_text
from explorer.widgets import chart
from lm.checkpoint import WEIGHTS_FILE, CheckpointError
from lm.finetune.classify import load_classifier, predict
from lm.finetune.data import ALPACA_TEMPLATE

AFTER_PENDING = "after training: measured on the same examples once the run ends"


def classify_comparison(name: str, evaluation: dict) -> None:
    """The confusion matrix on the test split before and after, side by side, each titled with its accuracy."""
    before = evaluation.get("before") if isinstance(evaluation.get("before"), dict) else None
    for column, when in zip(st.columns(2, gap="large"), ("before", "after")):
        result = evaluation.get(when)
        with column:
            if not isinstance(result, dict) or "confusion" not in result:
                st.info(f"**{when.capitalize()}**: {AFTER_PENDING if when == 'after' else 'not measured yet'}.")
                continue
            chart(confusion_figure(result["labels"], result["confusion"], accuracy_title(when, result, before)),
                  f"ft_confusion_{when}", f"{name}-confusion-{when}")


def accuracy_title(when: str, result: dict, before: dict | None) -> str:
    """'Before: 60.1% of 298 right' or 'After: 93.0% right (+32.9 points)'."""
    if when == "before":
        return f"Before: {result['accuracy']:.1%} of {result['n']:,} right"
    change = f" ({(result['accuracy'] - before['accuracy']) * 100:+.1f} points)" if before and "accuracy" in before else ""
    return f"After: {result['accuracy']:.1%} right{change}"


def answers(evaluation: dict) -> list[dict]:
    """One row per held-out prompt: the prompt, the expected answer, and the answer before and after."""
    before = (evaluation.get("before") or {}).get("examples") or []
    after = {e.get("prompt"): e.get("response") for e in (evaluation.get("after") or {}).get("examples") or []}
    return [{"prompt": e.get("prompt", ""), "expected": e.get("expected", ""), "before": e.get("response", ""),
             "after": after.get(e.get("prompt"))} for e in before]


def short_prompt(prompt: str) -> str:
    """The instruction (and input) of a prompt in the Alpaca template, without the template's
    fixed words around it (shown once, in the form); any other prompt as it is."""
    head, tail = ALPACA_TEMPLATE.split("{instruction}")[0], ALPACA_TEMPLATE.split("{input_block}")[1]
    if prompt.startswith(head) and prompt.endswith(tail):
        return prompt[len(head) : len(prompt) - len(tail)]
    return prompt


def measures_text(evaluation: dict, key: str, label: str) -> str | None:
    """'Exact match: 0% before, 67% after' (a share; a loss in nats); None when neither is known."""
    values = [(evaluation.get(when) or {}).get(key) for when in ("before", "after")]
    if not any(isinstance(v, (int, float)) for v in values):
        return None
    shown = ["—" if not isinstance(v, (int, float)) else f"{v:.0%}" if key == "exact_match" else f"{v:.3f}" for v in values]
    return f"{label}: {shown[0]} before, {shown[1]} after"


def generation_comparison(evaluation: dict, method: str) -> None:
    """The held-out prompts answered before and after, one at a time, beside the expected answer
    (continued pretraining: a held-out text's start, continued, and the validation loss)."""
    rows = answers(evaluation)
    if not rows:
        st.info("The held-out prompts are answered once the run has started: before training, then after.")
        return
    key, label = ("val_loss", "Validation loss") if method == "continue" else ("exact_match", "Exact match")
    prompt_column, pick = st.columns([3, 1], vertical_alignment="bottom")
    number = pick.number_input(f"Prompt (of {len(rows)})", 1, len(rows), 1, key="ft_example", bind=BIND,
                               disabled=len(rows) == 1)
    row = rows[int(number) - 1]
    prompt_column.markdown("**Prompt**")
    prompt_column.code(short_prompt(row["prompt"]), language=None, wrap_lines=True)
    measures = measures_text(evaluation, key, label)
    if measures:
        st.caption(measures)
    shown = [("Before", row["before"]), ("After", row["after"])] + ([("Expected", row["expected"])] if row["expected"] else [])
    for column, (title, text) in zip(st.columns(len(shown)), shown):
        column.markdown(f"**{title}**")
        column.code(text if text is not None else AFTER_PENDING, language=None, wrap_lines=True)


@st.cache_resource(show_spinner="Loading the classifier…", max_entries=4)
def _classifier(folder: str, stamp: FileStamp):
    """Shared by every session and never changed: cached on the weights' stamp, so a rewrite is re-read."""
    return load_classifier(folder)


def try_a_message(folder: Path) -> None:
    """Type a message, see the class the fine-tuned model gives it and the probabilities."""
    message = st.text_area("Type a message", "WINNER! You have won a free prize: text CLAIM to 80082 now", height=80,
                           max_chars=2_000, key="ft_message", bind=bind_text("ft_message", "the message"))
    if not message.strip():
        st.info("Type a message to classify.")
        return
    try:
        model, tokenizer = _classifier(str(folder), FileStamp.of(folder / WEIGHTS_FILE))
    except (CheckpointError, OSError) as exc:
        st.error(plain(f"The classifier cannot be loaded: {exc}"))
        return
    predictions = predict(model, tokenizer, message)
    label, probability = max(predictions, key=lambda p: p[1])
    st.markdown(f"The model says **{plain(label)}**, with probability {probability:.1%}.")
    chart(probability_figure(predictions), "ft_probabilities", "class-probabilities")
