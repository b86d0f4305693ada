"""What a fine-tune will cost, told before Start: the parameters that train (a count and a share
of the model: LoRA's point), the memory, and the time, timed here on this very model.

The time reuses the Train page's measurement (explorer.run_start.step_costs: a few real AdamW
steps of the model at the run's batch, on the run's threads) at the length of the data's
typical example. That step updates every weight; LoRA or frozen blocks change it by a ratio
timed here too (lm.finetune.timing.step_ratio: frozen weights skip their own gradients, LoRA
adds small layers, and which wins depends on the model). DPO is counted as twice the batch (the
chosen and the rejected answer) plus the reference model's forward pass over both."""

from __future__ import annotations

from dataclasses import replace

from explorer.finetune_runs import FinetuneRequest
from lm.checkpoint import unfilled_gpt
from lm.estimate import StepCosts, TimeEstimate, estimate
from lm.finetune.classify import ClassifierHead
from lm.finetune.data import response_mask
from lm.finetune.loop import choose_trainable
from lm.finetune.lora import count_trainable
from lm.model import GPTConfig
from lm.sizing import activation_bytes
from lm.train_config import TrainConfig

SAMPLE = 200  # examples tokenized to find the typical length
PERCENTILE = 0.9  # batches of similar length are padded to their longest: a long-ish example is typical
REFERENCE_FORWARD = 1 / 3  # a forward pass costs about a third of a training step (the backward is twice the forward)


def trainable_parameters(config: GPTConfig, request: FinetuneRequest, labels: int = 2) -> tuple[int, int]:
    """(parameters that train, all parameters) of the model this request trains, counted on a model
    whose weights are never filled and prepared as lm finetune prepares it: LoRA's adapters, or
    only the last blocks and the final norm; a classifier's new head always trains."""
    model = unfilled_gpt(config)
    head = ClassifierHead(config.n_embd, [str(n) for n in range(labels)]) if request.method == "classify" else None
    choose_trainable(model, request)
    trainable, total = count_trainable(model)
    extra = sum(p.numel() for p in head.parameters()) if head is not None else 0
    return trainable + extra, total + extra


def example_lengths(method: str, examples, tokenizer, block_size: int) -> list[int]:
    """Token lengths of up to SAMPLE examples as the method feeds them (DPO: the longer answer)."""
    lengths = []
    for example in list(examples)[:SAMPLE]:
        if method == "classify":
            lengths.append(min(block_size, len(tokenizer.encode(example.text))))
        elif method == "dpo":
            lengths.append(max(len(response_mask(tokenizer, example, answer, block_size)[0]) - 1
                               for answer in (example.chosen, example.rejected)))
        else:
            lengths.append(len(response_mask(tokenizer, example, block_size=block_size)[0]) - 1)
    return lengths


def typical_length(lengths: list[int], block_size: int) -> int:
    """The length a batch is padded to, typically: the 90th percentile; the context when unknown."""
    if not lengths:
        return block_size
    ordered = sorted(lengths)
    return max(1, min(block_size, ordered[min(len(ordered) - 1, int(PERCENTILE * len(ordered)))]))


def memory_bytes(config: GPTConfig, counts: tuple[int, int], batch: int, length: int, dpo: bool) -> int:
    """fp32 weights (twice for DPO: the frozen reference copy), gradients and two AdamW moments for
    the parameters that train only (12 bytes each), and the activations of the batch (DPO: both answers)."""
    trainable, total = counts
    sequences = batch * (2 if dpo else 1)
    return 4 * total * (2 if dpo else 1) + 12 * trainable + activation_bytes(replace(config, block_size=length), sequences)


def timing_config(request: FinetuneRequest, config: GPTConfig, length: int, device: str, threads: int) -> TrainConfig:
    """The pretraining run whose step a fine-tune step is timed as: this model, at the typical length."""
    return TrainConfig(
        data="finetune", n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd, block_size=length,
        batch_size=request.batch_size * (2 if request.method == "dpo" else 1), max_steps=1, eval_every=1,
        sample_every=0, snapshot_every=0, device=device, threads=threads, out="",
    )


def trains_everything(request: FinetuneRequest) -> bool:
    return not request.lora_rank and request.trainable_blocks is None


def run_time(request: FinetuneRequest, costs: StepCosts, startup: float, ratio: float = 1.0) -> TimeEstimate:
    """The whole run from the timed step (a step training every weight, times `ratio` for what
    this request trains): its steps, an evaluation with a checkpoint every interval (timed as that
    many validation batches), and the start; DPO's reference passes added."""
    step = costs.train_step * (ratio + (REFERENCE_FORWARD if request.method == "dpo" else 0))
    schedule = TrainConfig(max_steps=request.max_steps, eval_every=request.eval_interval, sample_every=0, snapshot_every=0)
    return estimate(schedule, replace(costs, train_step=step), startup)
