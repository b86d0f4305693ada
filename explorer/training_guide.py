"""The training guide: plain-language flags for what is going wrong in a run, each read
off its metrics (metrics.jsonl lines, samples.jsonl lines, its options), never shown
just in case. Every check is a pure function returning a Flag or None, so each can be
tested on a synthetic metric stream that shows the problem and on a healthy one."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from explorer.training_view import format_duration, series
from lm.estimate import eta_seconds

MIN_RECORDS = 6  # logged steps needed before judging a trend
FLAT_DROP = 0.03  # the loss fell by less than 3% of where it started: nothing is being learned
EXPLODE_RATIO = 1.5  # the loss climbed 50% above its best after the warmup…
EXPLODE_MIN_RISE = 0.5  # …and by this many nats: a task's loss near 0 wobbles from 0.11 to 0.18 while it learns
OVERFIT_RISE = 0.02  # validation 2% above its best while training still falls…
OVERFIT_MIN_RISE = 0.02  # …and by this many nats: near a loss of 0, 2% is noise
REPEAT_SHARE = 0.5  # half of a sample's word 3-grams are repeats
REPEAT_MIN_WORDS = 12
SLOW_SECONDS = 20 * 60  # more than this left on a CPU
SPIKE_OVER_BLIND = 1.5  # a loss 50% above a blind guess's: the weights were thrown off…
NEAR_BLIND = 0.8  # …and it then sits above 80% of a blind guess's loss: it has forgotten everything


@dataclass(frozen=True)
class Flag:
    key: str
    title: str
    evidence: str  # what the metrics show, with the numbers
    advice: str  # what to try


def diverged(metrics: list[dict], options: dict, error: str | None = None) -> Flag | None:
    """A NaN/inf loss (the trainer stops with an error saying so) or a loss that shoots up."""
    lr = options.get("lr", 1e-3)
    advice = (f"Lower the learning rate (now {lr:g}; try {lr / 3:.1g}), keep gradient clipping on (grad_clip 1.0), "
              "or make the warmup longer.")
    if error and "loss became" in error:
        return Flag("diverged", "The loss became NaN or infinite", error.split(":")[0].capitalize() + ".", advice)
    steps, losses = series(metrics, "train_loss")
    after_warmup = [loss for step, loss in zip(steps, losses) if step > options.get("warmup_steps", 0)]
    if len(after_warmup) < 3:
        return None
    best, recent = min(after_warmup), statistics.median(after_warmup[-3:])
    if recent > EXPLODE_RATIO * best and recent - best > EXPLODE_MIN_RISE:
        return Flag("diverged", "The loss is exploding",
                    f"The training loss climbed from its best, {best:.2f}, to {recent:.2f}.", advice)
    return None


def wrecked(metrics: list[dict], options: dict, vocab_size: int | None) -> Flag | None:
    """The loss shot far above a blind guess's, then settled on a plateau near it: a step too
    large threw the weights so far that the model unlearned everything, and it now guesses (a run
    at learning rate 0.5 spiked to 22, then sat at 5.4 beside the blind-guess line of 6.24,
    writing gibberish). Neither "exploding" (it is not rising now) nor "flat" (it fell from the
    spike) says so."""
    steps, losses = series(metrics, "train_loss")
    if not vocab_size or vocab_size < 2 or len(losses) < MIN_RECORDS:
        return None
    blind = math.log(vocab_size)
    peak_at = max(range(len(losses)), key=losses.__getitem__)
    after = losses[peak_at + 1 :]
    if losses[peak_at] < SPIKE_OVER_BLIND * blind or len(after) < 3:
        return None
    recent = after[-max(3, len(after) // 3) :]
    now = statistics.median(recent)
    if now < NEAR_BLIND * blind or recent[0] - recent[-1] > FLAT_DROP * recent[0]:
        return None  # recovered, or still recovering
    lr = options.get("lr", 1e-3)
    return Flag(
        "wrecked", "Training blew up and the model forgot everything",
        f"The training loss spiked to {losses[peak_at]:.1f} at step {steps[peak_at]:,}, then settled at {now:.2f}, "
        f"beside the blind-guess line ({blind:.2f}): the model is guessing, and its samples are gibberish.",
        f"Going on will not mend it. Start again with a much lower learning rate (now {lr:g}; 1e-3 to 3e-3 suit "
        "these small models) and gradient clipping on (grad_clip 1.0).",
    )


def flat(metrics: list[dict], options: dict) -> Flag | None:
    """The loss has hardly moved since the first logged step."""
    steps, losses = series(metrics, "train_loss")
    if len(losses) < MIN_RECORDS or steps[-1] <= options.get("warmup_steps", 0):
        return None
    start, now = statistics.mean(losses[:2]), statistics.mean(losses[-3:])
    if start - now < FLAT_DROP * start:
        return Flag(
            "flat", "The loss is flat",
            f"Over {steps[-1] - steps[0]:,} steps the training loss only went from {start:.2f} to {now:.2f}.",
            f"The learning rate may be too low (nothing moves) or too high (it bounces around): for AdamW try a short "
            f"sweep around 3e-4 (1e-4, 3e-4, 1e-3; now {options.get('lr', 1e-3):g}) and keep the one whose loss falls "
            "fastest.",
        )
    return None


def overfitting(metrics: list[dict], options: dict) -> Flag | None:
    """Validation loss rising from its best while the training loss keeps falling."""
    val_steps, val = series(metrics, "val_loss")
    if len(val) < 3:
        return None
    best_at = min(range(len(val)), key=val.__getitem__)
    if best_at == len(val) - 1 or val[-1] - val[best_at] < max(OVERFIT_RISE * val[best_at], OVERFIT_MIN_RISE):
        return None
    train = dict(zip(*series(metrics, "train_loss")))
    then, now = train.get(val_steps[best_at]), train.get(val_steps[-1])
    if then is None or now is None or now >= then:
        return None
    return Flag(
        "overfitting", "It is memorising the training text (overfitting)",
        f"Validation loss rose from {val[best_at]:.2f} (step {val_steps[best_at]:,}) to {val[-1]:.2f} while the "
        f"training loss fell from {then:.2f} to {now:.2f}.",
        f"Use more text, add dropout (now {options.get('dropout', 0):g}; try 0.1–0.2), make the model smaller, "
        "or keep the checkpoint from where validation was best.",
    )


def repetition_share(text: str, n: int = 3) -> float:
    """The share of the text's word n-grams that already appeared earlier in it."""
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def repeating(samples: list[dict], options: dict) -> Flag | None:
    """The latest sample loops over the same words, late enough in training to matter."""
    if not samples or samples[-1].get("step", 0) < 0.3 * options.get("max_steps", 0):
        return None
    text = samples[-1].get("text", "")
    share = repetition_share(text)
    if len(text.split()) < REPEAT_MIN_WORDS or share < REPEAT_SHARE:
        return None
    return Flag(
        "repeating", "The samples repeat themselves",
        f"{share:.0%} of the three-word runs in the step {samples[-1]['step']:,} sample are repeats.",
        "The model may be too small to hold longer patterns: add layers or width (watch the memory estimate) or "
        "train longer. When sampling, a higher temperature or top-p also breaks loops.",
    )


def slow(metrics: list[dict], options: dict, active: bool, device: str) -> Flag | None:
    """A run that will take long on a CPU, or on one GPU."""
    eta = eta_seconds(metrics, options.get("max_steps", 0)) if active else None
    if eta is None or eta < SLOW_SECONDS:
        return None
    advice = ("Several GPUs train it faster together: `torchrun --nproc_per_node=N -m lm train …` (see the README)."
              if device.startswith("cuda") else
              "A GPU trains this size many times faster (choose it under Device when there is one), and several GPUs "
              "faster still with torchrun; on a CPU, a smaller model or context trains in minutes.")
    return Flag("slow", "Training is slow", f"About {format_duration(eta)} left at this speed.", advice)


def diagnose(metrics: list[dict], samples: list[dict], options: dict, state: str = "running",
             error: str | None = None, device: str = "cpu", vocab_size: int | None = None) -> list[Flag]:
    """Every flag that fires for this run, most urgent first. `vocab_size` (the tokenizer's)
    places the blind-guess line; without it, a run wrecked by a spike is not recognised."""
    broken = wrecked(metrics, options, vocab_size) or diverged(metrics, options, error)
    checks = [
        broken,
        None if broken else flat(metrics, options),  # a loss that blew up has also stopped falling
        overfitting(metrics, options),
        repeating(samples, options),
        slow(metrics, options, state == "running", device),
    ]
    return [flag for flag in checks if flag is not None]
