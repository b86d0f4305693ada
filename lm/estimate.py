"""How long a run will take, told before it starts, by timing a few real steps of it here.

FLOPs per token over a device's FLOP rate underestimates small models several times over: a
step of a 2-layer, 32-wide model is mostly Python, kernel launches, the optimizer's work per
tensor and, for a task, making the examples, not arithmetic. So the estimate times the run's
own model, batch, data and threads on this device (a model too slow to time at its full batch
is timed at smaller ones and scaled), and adds what the run's schedule does besides training
steps: starting the process, validation passes and checkpoints, samples and attention snapshots.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil
import torch

from lm.data import CORPORA, is_cached, load_corpus, read_text_file
from lm.device import device_precision
from lm.model import GPT, GPTConfig
from lm.run_folder import METRICS_FILE, Run
from lm.sizing import flops_per_token
from lm.tasks import TaskData, find_task, task_tokenizer
from lm.tokenizer import BPETokenizer
from lm.train_config import TrainConfig

_timing_one_at_a_time = threading.Lock()
TIMED_STEPS = 4  # the fastest of these, after one to warm up: other programs only ever slow a step down
BUDGET_S = 3.0  # the longest the timed steps may take
FAST_CPU_FLOPS, FAST_GPU_FLOPS = 1e12, 1e15  # faster than any such device trains: a step's time can only be longer
PROBE_PASSES = 3  # forward passes per attention snapshot (the text, the induction probe, the weights saved)


@dataclass(frozen=True)
class StepCosts:
    """Seconds, measured on this device with the run's threads."""

    train_step: float  # one optimizer step, its batches made as the trainer makes them
    evaluation: float  # one validation loss (and a task's accuracy)
    sample: float  # one sample: a text's tokens, or a task's answers to a few held-out prompts
    snapshot: float  # one attention snapshot with the detector scores
    checkpoint: float  # serialising the weights and the optimizer's state
    log: float  # a line of metrics.jsonl and status.json written, every log_every steps
    timed_batch: int  # the batch the step was timed at (smaller than the run's: scaled up)


@dataclass(frozen=True)
class TimeEstimate:
    step_seconds: float
    startup: float  # starting the process until the first step
    training: float  # every training step, and the lines logged
    evaluation: float  # validation passes and the checkpoints saved with them
    extras: float  # samples and attention snapshots

    @property
    def run_seconds(self) -> float:
        return self.startup + self.training + self.evaluation + self.extras


def estimate(cfg: TrainConfig, costs: StepCosts, startup: float) -> TimeEstimate:
    """The run's time from its schedule: how many of each thing it does, times what each costs."""
    evaluations = cfg.max_steps // cfg.eval_every + (cfg.max_steps % cfg.eval_every > 0)
    samples = cfg.max_steps // cfg.sample_every if cfg.sample_every else 0
    snapshots = cfg.max_steps // cfg.snapshot_every + 1 + (cfg.max_steps % cfg.snapshot_every > 0) if cfg.snapshot_every else 0
    return TimeEstimate(
        step_seconds=costs.train_step,
        startup=startup,
        training=cfg.max_steps * costs.train_step + cfg.max_steps // cfg.log_every * costs.log,
        evaluation=evaluations * (costs.evaluation + costs.checkpoint),
        extras=samples * costs.sample + snapshots * costs.snapshot,
    )


def startup_seconds() -> float:
    """Starting a training process on this machine: Python and its imports (PyTorch most of
    all). A second's work: callers keep the figure (the app, once per server)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import lm.trainer"], check=True, capture_output=True)
    return time.perf_counter() - started


def measure_costs(cfg: TrainConfig, model_config: GPTConfig, budget: float = BUDGET_S) -> StepCosts:
    """Time the run's pieces with its own threads (the server's are restored afterwards). A thread
    count set here is this thread's and the one new threads start with (lm.generate.one_thread):
    one timing at a time, or two sessions timing at once would each slow the other's figures and
    could leave new threads the other's count."""
    with timing_threads(cfg.threads):
        return _Timing(cfg, model_config).costs(budget)


@contextmanager
def timing_threads(threads: int):
    """`threads` torch threads (0: as they are) for one timing at a time, the server's count restored
    after: every step timing in the process takes its turn here (lm.finetune.timing too)."""
    with _timing_one_at_a_time:
        previous = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def _fastest_seconds(work: Callable[[], object], repeats: int, device: str) -> float:
    def once() -> float:
        started = time.perf_counter()
        work()
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    return min(once() for _ in range(repeats))


class _Timing:
    """The run's model, optimizer and batches, built as the trainer builds them."""

    def __init__(self, cfg: TrainConfig, model_config: GPTConfig):
        from lm.trainer import make_optimizer  # the trainer imports much more than an estimate needs

        self.cfg, self.device = cfg, cfg.device
        torch.manual_seed(0)
        self.model = GPT(model_config).to(self.device)
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.precision = device_precision(cfg.precision, self.device)
        task = find_task(cfg.data)
        self.task_data = TaskData(task, task_tokenizer(), cfg.block_size) if task else None
        self.generator = torch.Generator().manual_seed(0)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.task_data is not None:
            x, y = self.task_data.batch(n, self.generator)
        else:
            ids = torch.randint(0, self.model.config.vocab_size, (n, self.cfg.block_size + 1), generator=self.generator)
            x, y = ids[:, :-1], ids[:, 1:]
        return x.to(self.device), y.to(self.device)

    def autocast(self):
        dtype = self.precision.dtype
        return torch.autocast(torch.device(self.device).type, dtype=dtype, enabled=dtype is not None)

    def train_step(self, n: int) -> None:
        self.model.train()
        for _ in range(self.cfg.grad_accum):
            x, y = self.batch(n)
            with self.autocast():
                loss = self.model(x, y).loss / self.cfg.grad_accum
            loss.backward()
        loss.item()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip or float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def forward(self, n: int, length: int | None = None) -> None:
        self.model.eval()
        x, y = self.batch(n)
        with self.autocast():
            self.model(x[:, :length], y[:, :length]).loss.item()

    def step_seconds(self, budget: float) -> tuple[float, int]:
        """(seconds per step at the run's batch, the batch timed). The full batch is timed as it
        is: a few steps when one fits the budget, else that one step. Only a model so big that
        even a fast device would pass the budget is timed at one sequence and scaled by the batch
        (timing small batches and extrapolating overestimated a tiny model several times on a
        busy machine)."""
        full = self.cfg.batch_size
        self.train_step(1)  # the first step allocates and warms up
        tokens = full * self.cfg.block_size * self.cfg.grad_accum
        fast_device = FAST_GPU_FLOPS if self.device.startswith("cuda") else FAST_CPU_FLOPS
        if flops_per_token(self.model.config) * tokens / fast_device > budget:
            return _fastest_seconds(lambda: self.train_step(1), 1, self.device) * full, 1
        first = _fastest_seconds(lambda: self.train_step(full), 1, self.device)
        if first * TIMED_STEPS > budget:
            return first, full
        return min(first, _fastest_seconds(lambda: self.train_step(full), TIMED_STEPS, self.device)), full

    def costs(self, budget: float) -> StepCosts:
        step, timed_batch = self.step_seconds(budget)
        scale = self.cfg.batch_size / timed_batch
        if self.task_data is not None:
            evaluation = _fastest_seconds(lambda: self.task_data.evaluate(self.model, self.device), 2, self.device)
            sample = _fastest_seconds(lambda: self.task_data.show_answers(self.model), 1, self.device)
        else:
            batch = scale * _fastest_seconds(lambda: self.forward(timed_batch), 2, self.device)
            evaluation = self.cfg.eval_batches * batch
            sample = self.cfg.sample_tokens * _fastest_seconds(lambda: self.forward(1, 1), 5, self.device)
        snapshot = PROBE_PASSES * _fastest_seconds(lambda: self.forward(1), 2, self.device)
        checkpoint = _fastest_seconds(self.serialise, 1, self.device)
        with tempfile.TemporaryDirectory() as folder:
            run = Run(folder)
            log = _fastest_seconds(lambda: (run.append(METRICS_FILE, {"step": 1}), run.write_status("running")), 3, "cpu")
        return StepCosts(step, evaluation, sample, snapshot, checkpoint, log, timed_batch)

    def serialise(self) -> None:
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}, io.BytesIO())


# --- during a run --------------------------------------------------------------------------------

def _since_restart(metrics: list[dict]) -> list[tuple[dict, int, float]]:
    """(record, steps, seconds) of each interval between metrics.jsonl records since the process
    last (re)started: a resumed run restarts its clock ("elapsed"), so only records after the
    last restart count, the first of them from the step the process started at."""
    timed = [r for r in metrics if isinstance(r.get("elapsed"), (int, float)) and isinstance(r.get("step"), int)]
    start = len(timed) - 1
    while start > 0 and timed[start - 1]["elapsed"] < timed[start]["elapsed"]:
        start -= 1
    if not timed:
        return []
    previous = {"step": timed[start - 1]["step"] if start else 0, "elapsed": 0.0}
    intervals = []
    for record in timed[start:]:
        intervals.append((record, record["step"] - previous["step"], record["elapsed"] - previous["elapsed"]))
        previous = record
    return intervals


def seconds_per_step(metrics: list[dict], memory: float = 0.25, min_memory_steps: int = 100) -> float | None:
    """Seconds a training step takes, from metrics.jsonl's records: the intervals between them
    without a validation pass, averaged with weights that halve every `memory` of the steps
    done (at least `min_memory_steps`). Steady through a busy moment of the machine (a plain
    window of the last few records jumped 1:37 → 2:26 → 1:06), it still follows a lasting
    change of speed. Validation passes are counted apart (eta_seconds)."""
    intervals = [(r, n, s) for r, n, s in _since_restart(metrics) if n > 0 and s > 0]
    plain = [(r, n, s) for r, n, s in intervals if "val_loss" not in r] or intervals
    if not plain:
        return None
    last = plain[-1][0]["step"]
    half_life = max(min_memory_steps, memory * last)
    weights = [0.5 ** ((last - r["step"]) / half_life) for r, _, _ in plain]
    return sum(w * s for w, (_, _, s) in zip(weights, plain)) / sum(w * n for w, (_, n, _) in zip(weights, plain))


def eta_seconds(metrics: list[dict], max_steps: int) -> float | None:
    """The steps left at seconds_per_step, and the validation passes left at what each has cost
    beyond its steps (their spacing read off the records)."""
    per_step = seconds_per_step(metrics)
    if per_step is None or not metrics:
        return None
    step = metrics[-1]["step"]
    left = max(0, max_steps - step) * per_step
    evaluations = [(r, n, s) for r, n, s in _since_restart(metrics) if "val_loss" in r and n > 0]
    if evaluations:
        each = max(0.0, sum(s - n * per_step for _, n, s in evaluations) / len(evaluations))
        val_steps = [r["step"] for r in metrics if "val_loss" in r]
        every = val_steps[-1] - val_steps[-2] if len(val_steps) > 1 else val_steps[0]
        left += (max(0, max_steps - step) // max(1, every) + (max_steps > step and max_steps % max(1, every) > 0)) * each
    return left


def run_threads(threads: int) -> int:
    """The CPU threads a new training process computes with when asked for `threads` (0: PyTorch's
    default there, one per physical core; the server's own count differs)."""
    return threads or psutil.cpu_count(logical=False) or 1


BPE_SLICE = 200_000  # characters of the text a BPE is timed on before its time is scaled to the whole


def tokenizer_seconds(cfg: TrainConfig, text: str | None = None) -> float:
    """Training the run's own BPE (tokenizer "bpe:N") on its text, before the first step: timed
    on a slice and scaled to the training part's length (a BPE's time grows a little slower
    than that, so this leans long). 0 for a task, a ready tokenizer, or a corpus not on disk
    yet (the download is not estimated). `text`: the run's own text, if the plan keeps one."""
    if not cfg.tokenizer.startswith("bpe:") or find_task(cfg.data):
        return 0.0
    text = text if text is not None else _text_on_disk(cfg.data)
    if not text:
        return 0.0
    training = text[: int(len(text) * (1 - cfg.val_fraction))]
    sample = training[:BPE_SLICE]
    started = time.perf_counter()
    BPETokenizer.train(sample, int(cfg.tokenizer[4:]))
    return (time.perf_counter() - started) * len(training) / max(1, len(sample))


def _text_on_disk(data: str) -> str | None:
    if data in CORPORA:
        return load_corpus(data) if is_cached(CORPORA[data]) else None
    return read_text_file(data) if Path(data).is_file() else None
