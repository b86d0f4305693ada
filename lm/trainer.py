"""The training loop, and the run folder it writes as it goes.

Each step: take random windows of the corpus, predict every next token, and
nudge the weights down the gradient of the cross-entropy loss with AdamW
(learning rate: linear warmup, then cosine decay). Every few steps it logs the
loss, measures it on held-out text, samples a little, and saves a checkpoint,
so a run can be watched from another process and resumed after a stop.

The run folder it writes (lm.run_folder): the checkpoint and the state to resume
it from, the metrics, samples and status; and, to watch heads form, attention
snapshots of a fixed probe text from step 0 with each head's detector scores.
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from lm import distributed
from lm.checkpoint import CONFIG_FILE, load_checkpoint, read_config
from lm.data import CORPORA, DataError, encode_corpus, load_corpus, random_batch, read_text_file, split_tokens
from lm.detectors import snapshot
from lm.device import device_precision, resolve_device, to_device
from lm.generate import Sampling, end_of_text_id, generate
from lm.model import GPT
from lm.run_folder import METRICS_FILE, SAMPLES_FILE, Run, is_training_run
from lm.tasks import TaskData, find_task, task_tokenizer
from lm.tokenizer import TIKTOKEN_ENCODINGS, BPETokenizer, TiktokenTokenizer, load_tokenizer
from lm.train_config import TrainConfig, padded_vocab_size


class TrainingFailed(RuntimeError):
    """The run cannot go on (a NaN loss, say); the message says what to try."""


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to lr, then cosine decay to min_lr at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def make_optimizer(model: GPT, cfg: TrainConfig, device: str) -> torch.optim.AdamW:
    """Decay weight matrices and embeddings; never biases or LayerNorm gains. Fused on a GPU and
    on the CPU: one kernel over all tensors (on a CPU about 10x faster than the per-tensor loop
    at the GPT-2-tiny shape, benchmarks/train.py)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = torch.device(device).type in ("cuda", "cpu")
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)
    # The fused kernel writes the weights without bumping their version counters, which
    # lm.readout.readout trusts to know its kept output head is current: bump them here.
    optimizer.register_step_post_hook(lambda opt, args, kwargs: torch.autograd.graph.increment_version(params))
    return optimizer


def build_tokenizer(spec: str, text: str):
    if spec in TIKTOKEN_ENCODINGS:
        return TiktokenTokenizer(spec)
    if spec.startswith("bpe:"):
        return BPETokenizer.train(text, int(spec[4:]), name=f"bpe-{spec[4:]}")
    return load_tokenizer(spec)


def read_text(data: str) -> str:
    return load_corpus(data) if data in CORPORA else read_text_file(data)


PROBE_TOKENS = 48  # the most of the validation text a text run's snapshots show


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg = cfg.check()
        self.world = distributed.world_from_env()  # which process of how many, under torchrun
        self.run = Run(cfg.out, writes=self.world.is_main)
        if self.world.is_main:
            self.run.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._prepare(resume)
        except Exception as exc:  # a short text, a bad tokenizer file: say so where the run is watched
            self.run.write_status("failed", step=0, max_steps=cfg.max_steps, error=str(exc))
            raise

    def _prepare(self, resume: bool) -> None:
        cfg, world = self.cfg, self.world
        self.device = distributed.process_device(resolve_device(cfg.device), world)
        self.precision = device_precision(cfg.precision, self.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if self.device.startswith("cuda"):  # fp32 matmuls on the tensor cores, in TF32
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        distributed.start(self.device, world)
        self.stop_requested = self.signalled = False  # stop when all processes agree; a signal has come
        # Process 0 reads the text and builds the tokenizer and the model; the others get them
        # from it, so only one process downloads, trains a tokenizer or writes caches.
        task = find_task(cfg.data)
        shared = None
        if world.is_main:
            text = None if task else read_text(cfg.data)
            state = self.run.resume_state() if resume else None  # first: it finishes or refuses a checkpoint cut short
            if resume:
                checkpoint = load_checkpoint(self.run.folder)
                model, tokenizer = checkpoint.model, checkpoint.tokenizer
            else:
                torch.manual_seed(cfg.seed)
                train_text = None if task else text[: int(len(text) * (1 - cfg.val_fraction))]
                tokenizer = task_tokenizer() if task else build_tokenizer(cfg.tokenizer, train_text)
                model = GPT(cfg.model_config(padded_vocab_size(tokenizer.vocab_size)).validate())
            splits = (None, None) if task else split_tokens(encode_corpus(text, tokenizer), cfg.val_fraction, cfg.block_size)
            shared = (tokenizer, model.config, *splits, state)
        self.tokenizer, config, self.train_ids, self.val_ids, state = distributed.broadcast(shared, world)
        self.task_data = TaskData(task, self.tokenizer, cfg.block_size) if task else None  # its batches replace the ids
        if not world.is_main:
            torch.manual_seed(cfg.seed + world.rank)  # its own dropout; the weights DDP copies from process 0
            model = GPT(config)
        self.model = model.to(self.device)
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.batches = torch.Generator().manual_seed(cfg.seed)  # alike in every process
        self.step, self.saved_step = 0, None  # the step of the newest checkpoint: none yet, or the one resumed
        self.best_val_loss = float("inf")
        self.val_loss, self.val_step = None, None  # the latest validation loss, and the step it measured
        self.balance_loss = None  # a mixture of experts: the last step's load-balancing loss (lm.moe)
        self._build_engine()
        if state is not None:
            self._restore(state)

    def _build_engine(self) -> None:
        """What a training step runs: the model, compiled if asked, inside DDP with several
        processes; and the gradient scaler fp16 needs (for other precisions it does nothing)."""
        compiled = torch.compile(self.model) if self.cfg.compile else self.model  # saved weights keep plain names
        self.engine = distributed.wrap(compiled, self.device, self.world)
        self.scaler = torch.amp.GradScaler(torch.device(self.device).type, enabled=self.precision.scaled)

    def _autocast(self):
        dtype = self.precision.dtype
        return torch.autocast(torch.device(self.device).type, dtype=dtype, enabled=dtype is not None)

    def _batch(self, ids, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's share of batch_size x processes random windows, on its device: every
        process draws the same windows, so together they train on what one process would."""
        n = self.cfg.batch_size * self.world.size
        if self.task_data is not None:  # a task's examples, made as it goes
            windows = self.task_data.batch(n, generator)
        else:
            windows = random_batch(ids, n, self.cfg.block_size, generator)
        x, y = (to_device(distributed.own_share(t, self.world), self.device) for t in windows)
        return x, y

    # --- the loop ---------------------------------------------------------------

    def train(self, progress: Callable[[dict], None] | None = None) -> str:
        """Train to max_steps or until stopped; returns the final state (finished or stopped)."""
        cfg, run = self.cfg, self.run
        previous_handlers = {s: signal.signal(s, self._request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        run.write_status("running", step=self.step, max_steps=cfg.max_steps)
        started, interval_seconds, interval_tokens = time.time(), 0.0, 0  # tokens/s counts training steps only
        try:
            if cfg.snapshot_every and self.step == 0:
                self.snapshot()  # the heads at initialisation, for the trained ones to be compared with
            while self.step < cfg.max_steps and not self.stop_requested:
                step_start = time.perf_counter()
                lr, loss, grad_norm, tokens = self._train_step()
                interval_seconds += time.perf_counter() - step_start
                self.step += 1
                interval_tokens += tokens
                record = self._record_step(lr, loss, grad_norm, interval_tokens / interval_seconds, started)
                if record is not None:
                    interval_seconds, interval_tokens = 0.0, 0
                    run.write_status("running", step=self.step, max_steps=cfg.max_steps)
                    if progress:
                        progress(record)
            if not distributed.replicas_agree(self.model, self.world):
                raise TrainingFailed("the processes' copies of the model differ, which DDP should prevent: do not trust this run")
            state = "finished" if self.step >= cfg.max_steps else "stopped"
            if self.saved_step != self.step:
                self.save()
            run.write_status(state, step=self.step, max_steps=cfg.max_steps, best_val_loss=self._best())
            return state
        except Exception as exc:  # recorded for whoever watches the folder, then raised as usual
            error = str(exc) if isinstance(exc, TrainingFailed) else f"{type(exc).__name__}: {exc}"
            run.write_status("failed", step=self.step, max_steps=cfg.max_steps, error=error)
            raise
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)

    def _record_step(self, lr: float, loss: float, grad_norm: float, tokens_per_s: float, started: float) -> dict | None:
        """What the step just taken logs (its metrics line, returned; None if it logs none), samples
        and snapshots, then its checkpoint, if it saves one: after every line of the step, so a kill
        cannot lose a line that the checkpoint covers (resuming drops those of later steps)."""
        cfg, run = self.cfg, self.run
        evaluate_now = self.step % cfg.eval_every == 0 or self.step == cfg.max_steps
        record = None
        if evaluate_now or self.step % cfg.log_every == 0:
            record = {"step": self.step, "train_loss": loss, "lr": lr, "grad_norm": grad_norm,
                      "tokens_per_s": tokens_per_s, "elapsed": time.time() - started}
            if self.balance_loss is not None:  # the last step's load-balancing loss: 1 is an even load
                record["balance_loss"] = self.balance_loss
            if evaluate_now:
                record["val_loss"] = self.evaluate()
                if self.task_data is not None:
                    record["task_accuracy"] = self.task_accuracy
            run.append(METRICS_FILE, record)
        if cfg.sample_every and self.step % cfg.sample_every == 0 and self.world.is_main:
            run.append(SAMPLES_FILE, {"step": self.step, "text": self.sample()})
        if cfg.snapshot_every and (self.step % cfg.snapshot_every == 0 or self.step == cfg.max_steps):
            self.snapshot()
        if evaluate_now:
            self.save()
        return record

    def _train_step(self) -> tuple[float, float, float, int]:
        """One optimizer step; returns the learning rate, the mean loss, the gradient norm and
        the tokens all processes read (a task's batches are only as long as their longest example)."""
        cfg = self.cfg
        lr = learning_rate(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.engine.train()
        total, balance, tokens = 0.0, 0.0, 0
        for micro in range(cfg.grad_accum):
            x, y = self._batch(self.train_ids, self.batches)
            tokens += x.numel() * self.world.size
            with distributed.no_sync(self.engine, skip=micro < cfg.grad_accum - 1):  # average gradients once, at the end
                with self._autocast():
                    output = self.engine(x, y)
                    loss = output.loss / cfg.grad_accum
                    objective = loss
                    if output.aux_loss is not None:  # a mixture of experts: keep the experts' load even (lm.moe)
                        objective = loss + self.model.config.moe_aux_weight * output.aux_loss / cfg.grad_accum
                        balance += output.aux_loss.item() / cfg.grad_accum
                self.scaler.scale(objective).backward()
            total += loss.item()
        # The mean losses over all processes, and whether any was signalled: they stop at the same step.
        total_sum, balance_sum, signalled = distributed.sum_all([total, balance, float(self.signalled)], self.device,
                                                                self.world)
        total, self.stop_requested = total_sum / self.world.size, self.stop_requested or signalled > 0
        self.balance_loss = balance_sum / self.world.size if self.model.config.n_experts else None
        if not math.isfinite(total):  # the same on every process, so all of them fail together
            raise TrainingFailed(
                f"the loss became {total} at step {self.step + 1}: training diverged. Try a lower learning rate "
                f"(now {cfg.lr:g}; try {cfg.lr / 3:.1g}), gradient clipping (grad_clip 1.0), or a longer warmup."
            )
        clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        self.scaler.step(self.optimizer)  # with fp16, skipped when a gradient overflowed
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return lr, total, grad_norm, tokens

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss on the same validation windows every time, so evaluations compare; with
        several processes each measures its share of every batch. A task's held-out examples are
        few: every process measures them all, and their exact-match accuracy (task_accuracy)."""
        self.model.eval()
        if self.task_data is not None:
            with self._autocast():
                self.val_loss, self.task_accuracy = self.task_data.evaluate(self.model, self.device)
        else:
            windows = torch.Generator().manual_seed(self.cfg.seed)
            total = 0.0
            for _ in range(self.cfg.eval_batches):
                with self._autocast():
                    total += self.model(*self._batch(self.val_ids, windows)).loss.item()
            total = distributed.sum_all([total], self.device, self.world)[0]
            self.val_loss = total / (self.cfg.eval_batches * self.world.size)
        self.val_step = self.step
        self.best_val_loss = min(self.best_val_loss, self.val_loss)
        return self.val_loss

    def sample(self) -> str:
        """Text the model writes from nothing; for a task, its answers to a few held-out prompts."""
        if self.task_data is not None:
            return self.task_data.show_answers(self.model)
        settings = Sampling(temperature=0.8, top_k=40, max_new_tokens=self.cfg.sample_tokens, seed=self.cfg.seed)
        prompt = [] if end_of_text_id(self.tokenizer) is not None else self.tokenizer.encode("\n")
        return "".join(step.text for step in generate(self.model, self.tokenizer, prompt, settings, explain=False))

    def probe(self) -> list[int]:
        """The fixed text whose attention snapshots show: a held-out example of a task, else the
        start of the validation text."""
        if self.task_data is not None:
            return self.task_data.probe()
        return [int(i) for i in self.val_ids[: min(self.cfg.block_size, PROBE_TOKENS)]]

    def snapshot(self) -> None:
        """attention/step_NNNNNNN.safetensors: every head's attention on the probe ("attention",
        [n_layer, n_head, T, T], float16); and a line of detectors.jsonl with each head's scores.
        probe.json ({"ids", "tokens"}) says what the probe is. Two short forward passes."""
        if not self.world.is_main:
            return
        vocabulary = self.task_data.vocabulary if self.task_data else None
        snapshot(self.run, self.step, self.model, self.probe(), self.tokenizer, vocabulary)

    def _best(self) -> float | None:
        """The best validation loss so far; None (JSON null) before the first evaluation."""
        return None if math.isinf(self.best_val_loss) else self.best_val_loss

    def _request_stop(self, signum, frame) -> None:
        self.signalled = True  # the next step tells the other processes, and all stop after it

    # --- saving and resuming ----------------------------------------------------

    def save(self) -> None:
        """Process 0 writes the checkpoint; every process must call this (it collects their random states)."""
        rngs = distributed.gather(self._rng_state(), self.world)
        self.saved_step = self.step
        if not self.world.is_main:
            return
        training = {
            "config": asdict(self.cfg), "step": self.step, "best_val_loss": self._best(),
            "val_loss": self.val_loss if self.val_step == self.step else None,  # of exactly these weights
        }
        state = {
            "step": self.step, "best_val_loss": self.best_val_loss, "optimizer": self.optimizer.state_dict(),
            "batches": self.batches.get_state(), "rngs": rngs, "scaler": self.scaler.state_dict(),
        }
        self.run.save(self.model, self.tokenizer, training, state)

    def _rng_state(self) -> dict:
        """This process's random state (dropout draws from it)."""
        state = {"cpu": torch.get_rng_state()}
        if self.device.startswith("cuda"):
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _restore(self, state: dict) -> None:
        """Continue exactly where state.pt was saved, in every process."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.batches.set_state(state["batches"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rngs = state.get("rngs") or [{"cpu": state["torch_rng"]}]  # state.pt written before processes counted
        if self.world.rank < len(rngs):  # resumed with more processes: a new one keeps its fresh seed
            torch.set_rng_state(rngs[self.world.rank]["cpu"])
            if "cuda" in rngs[self.world.rank] and self.device.startswith("cuda"):
                torch.cuda.set_rng_state(rngs[self.world.rank]["cuda"], self.device)
        self.step, self.best_val_loss = state["step"], state["best_val_loss"]
        self.saved_step = self.step


def resume_config(folder: str | os.PathLike, **overrides) -> TrainConfig:
    """The config a run was started with (for resuming it), with e.g. max_steps raised."""
    if is_training_run(Path(folder)) and not (Path(folder) / CONFIG_FILE).is_file():
        raise DataError(f"{folder} stopped before its first checkpoint: there is nothing to resume; start the run again")
    _, training = read_config(folder)
    if not isinstance(training.get("config"), dict):
        raise DataError(f"{folder} was not written by training (an imported model, say): there is no run to resume")
    return TrainConfig.from_dict({**training["config"], **overrides, "out": str(folder)})
