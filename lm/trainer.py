"""The training loop, and the run folder it writes as it goes.

Each step: take random windows of the corpus, predict every next token, and
nudge the weights down the gradient of the cross-entropy loss with AdamW
(learning rate: linear warmup, then cosine decay). Every few steps it logs the
loss, measures it on held-out text, samples a little, and saves a checkpoint,
so a run can be watched from another process and resumed after a stop.

Run folder (DESIGN.md): config.json, tokenizer.json, model.safetensors (the
checkpoint), metrics.jsonl, samples.jsonl, status.json, train.log, state.pt
(optimizer and random-number state for resuming).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch

from lm.checkpoint import load_checkpoint, read_config, save_checkpoint
from lm.data import CORPORA, DataError, encode_corpus, load_corpus, random_batch, read_text_file, split_tokens
from lm.device import default_device
from lm.generate import Sampling, end_of_text_id, generate
from lm.model import GPT, GPTConfig
from lm.tokenizer import TIKTOKEN_ENCODINGS, BPETokenizer, TiktokenTokenizer, load_tokenizer


def option(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    out: str = option("runs/run", "run folder to write (and to resume from)")
    data: str = option("tinyshakespeare", "a corpus name (tinyshakespeare) or a path to a UTF-8 text file")
    tokenizer: str = option(
        "bpe:1024",
        "bpe:N trains the project's BPE with N tokens on the data; r50k_base (GPT-2), cl100k_base, o200k_base; "
        "or a saved tokenizer .json",
    )
    val_fraction: float = option(0.1, "share of the text (its end) held out to measure validation loss")
    n_layer: int = option(4, "transformer blocks")
    n_head: int = option(4, "attention heads per block")
    n_embd: int = option(128, "embedding width (divisible by n_head)")
    block_size: int = option(128, "context length in tokens")
    dropout: float = option(0.0, "dropout probability (0 for short runs; 0.1-0.2 against overfitting)")
    bias: bool = option(True, "biases in linear layers and layer norms, as GPT-2")
    batch_size: int = option(16, "sequences per micro-batch")
    grad_accum: int = option(1, "micro-batches per optimizer step (a larger batch without more memory)")
    max_steps: int = option(2000, "optimizer steps to train for")
    lr: float = option(1e-3, "peak learning rate")
    min_lr: float = option(1e-4, "learning rate at the end of the cosine decay")
    warmup_steps: int = option(100, "steps of linear warmup from 0 to lr")
    weight_decay: float = option(0.1, "AdamW weight decay, on weight matrices only")
    beta1: float = option(0.9, "AdamW beta1")
    beta2: float = option(0.99, "AdamW beta2")
    grad_clip: float = option(1.0, "clip the gradient norm to this (0: no clipping)")
    log_every: int = option(10, "steps between lines in metrics.jsonl")
    eval_every: int = option(100, "steps between validation-loss measurements and checkpoints")
    eval_batches: int = option(20, "batches averaged for each validation loss")
    sample_every: int = option(200, "steps between generated samples (0: never)")
    sample_tokens: int = option(100, "tokens per sample")
    seed: int = option(1337, "random seed: the same seed gives the same initialisation and batches")
    device: str = option("auto", "auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:1, mps")
    threads: int = option(0, "CPU threads for PyTorch (0: its default)")

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(
            vocab_size=vocab_size, block_size=self.block_size, n_layer=self.n_layer, n_head=self.n_head,
            n_embd=self.n_embd, dropout=self.dropout, bias=self.bias,
        )

    def check(self) -> "TrainConfig":
        """Refuse, naming the field, what would fail later (after minutes of preparation) or
        silently train nonsense; a config file may hold "16" where 16 is meant."""
        for f in fields(self):
            value, kind = getattr(self, f.name), type(f.default)
            ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
            if not ok or (kind is not bool and isinstance(value, bool)):
                raise ValueError(f"{f.name} must be a {kind.__name__}, not {value!r}")
        at_least = {
            "batch_size": 1, "grad_accum": 1, "max_steps": 1, "log_every": 1, "eval_every": 1, "eval_batches": 1,
            "warmup_steps": 0, "sample_every": 0, "sample_tokens": 1, "threads": 0, "weight_decay": 0, "grad_clip": 0,
        }
        for name, low in at_least.items():
            if not getattr(self, name) >= low:
                raise ValueError(f"{name} must be at least {low}, not {getattr(self, name)}")
        for name in ("val_fraction", "beta1", "beta2"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must be between 0 and 1, not {getattr(self, name)}")
        if not (0 < self.lr < math.inf and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"need 0 <= min_lr <= lr and lr > 0 (got lr={self.lr}, min_lr={self.min_lr})")
        self.model_config(vocab_size=1).validate()
        return self

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training options: {', '.join(sorted(unknown))}")
        return cls(**data)


class TrainingFailed(RuntimeError):
    """The run cannot go on (a NaN loss, say); the message says what to try."""


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to lr, then cosine decay to min_lr at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def make_optimizer(model: GPT, cfg: TrainConfig, device: str) -> torch.optim.AdamW:
    """Decay weight matrices and embeddings; never biases or LayerNorm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.startswith("cuda"))


def build_tokenizer(spec: str, text: str):
    if spec in TIKTOKEN_ENCODINGS:
        return TiktokenTokenizer(spec)
    if spec.startswith("bpe:"):
        return BPETokenizer.train(text, int(spec[4:]), name=f"bpe-{spec[4:]}")
    return load_tokenizer(spec)


def read_text(data: str) -> str:
    return load_corpus(data) if data in CORPORA else read_text_file(data)


class Run:
    """The run folder as the trainer writes it; any process may read it meanwhile."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def write_status(self, state: str, **extra) -> None:
        status = {"state": state, "pid": os.getpid(), "heartbeat": time.time(), **extra}
        tmp = self.folder / "status.json.tmp"
        tmp.write_text(json.dumps(status, allow_nan=False), encoding="utf-8")  # strict JSON for any reader
        os.replace(tmp, self.folder / "status.json")

    def append(self, name: str, record: dict) -> None:
        with open(self.folder / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def truncate_after(self, name: str, step: int) -> None:
        """On resume, drop lines logged after the saved step, so the curve continues cleanly."""
        path = self.folder / name
        if path.is_file():
            lines = [l for l in path.read_text(encoding="utf-8").splitlines() if l and json.loads(l)["step"] <= step]
            path.write_text("".join(l + "\n" for l in lines), encoding="utf-8")


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg = cfg.check()
        self.run = Run(cfg.out)
        self.run.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._prepare(resume)
        except Exception as exc:  # a short text, a bad tokenizer file: say so where the run is watched
            self.run.write_status("failed", step=0, max_steps=cfg.max_steps, error=str(exc))
            raise

    def _prepare(self, resume: bool) -> None:
        cfg = self.cfg
        self.device = default_device() if cfg.device == "auto" else cfg.device
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.stop_requested = False
        text = read_text(cfg.data)
        if resume:
            checkpoint = load_checkpoint(self.run.folder, self.device)
            self.model, self.tokenizer = checkpoint.model, checkpoint.tokenizer
        else:
            torch.manual_seed(cfg.seed)
            self.tokenizer = build_tokenizer(cfg.tokenizer, text[: int(len(text) * (1 - cfg.val_fraction))])
            vocab_size = math.ceil(self.tokenizer.vocab_size / 64) * 64  # a multiple of 64 multiplies faster
            self.model = GPT(cfg.model_config(vocab_size).validate()).to(self.device)
        ids = encode_corpus(text, self.tokenizer)
        self.train_ids, self.val_ids = split_tokens(ids, cfg.val_fraction, cfg.block_size)
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        self.batches = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.best_val_loss = float("inf")
        self.val_loss, self.val_step = None, None  # the latest validation loss, and the step it measured
        if resume:
            self._load_state()

    # --- the loop ---------------------------------------------------------------

    def train(self, progress: Callable[[dict], None] | None = None) -> str:
        """Train to max_steps or until stopped; returns the final state (finished or stopped)."""
        cfg, run = self.cfg, self.run
        previous_handlers = {s: signal.signal(s, self._request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        run.write_status("running", step=self.step, max_steps=cfg.max_steps)
        tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum
        started, interval_seconds, interval_steps = time.time(), 0.0, 0  # tokens/s counts training steps only
        try:
            while self.step < cfg.max_steps and not self.stop_requested:
                step_start = time.perf_counter()
                lr, loss, grad_norm = self._train_step()
                interval_seconds += time.perf_counter() - step_start
                self.step += 1
                interval_steps += 1
                evaluate_now = self.step % cfg.eval_every == 0 or self.step == cfg.max_steps
                if evaluate_now or self.step % cfg.log_every == 0:
                    record = {
                        "step": self.step, "train_loss": loss, "lr": lr, "grad_norm": grad_norm,
                        "tokens_per_s": tokens_per_step * interval_steps / interval_seconds,
                        "elapsed": time.time() - started,
                    }
                    if evaluate_now:
                        record["val_loss"] = self.evaluate()
                        self.save()
                    run.append("metrics.jsonl", record)
                    run.write_status("running", step=self.step, max_steps=cfg.max_steps)
                    if progress:
                        progress(record)
                    interval_seconds, interval_steps = 0.0, 0
                if cfg.sample_every and self.step % cfg.sample_every == 0:
                    run.append("samples.jsonl", {"step": self.step, "text": self.sample()})
            state = "finished" if self.step >= cfg.max_steps else "stopped"
            if state == "stopped" or self.step % cfg.eval_every:
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

    def _train_step(self) -> tuple[float, float, float]:
        cfg = self.cfg
        lr = learning_rate(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        total = 0.0
        for _ in range(cfg.grad_accum):
            x, y = random_batch(self.train_ids, cfg.batch_size, cfg.block_size, self.batches)
            loss = self.model(x.to(self.device), y.to(self.device)).loss / cfg.grad_accum
            loss.backward()
            total += loss.item()
        if not math.isfinite(total):
            raise TrainingFailed(
                f"the loss became {total} at step {self.step + 1}: training diverged. Try a lower learning rate "
                f"(now {cfg.lr:g}; try {cfg.lr / 3:.1g}), gradient clipping (grad_clip 1.0), or a longer warmup."
            )
        clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return lr, total, grad_norm

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss on the same validation windows every time, so evaluations compare."""
        self.model.eval()
        windows = torch.Generator().manual_seed(self.cfg.seed)
        losses = [
            self.model(*(t.to(self.device) for t in random_batch(self.val_ids, self.cfg.batch_size, self.cfg.block_size, windows))).loss.item()
            for _ in range(self.cfg.eval_batches)
        ]
        self.val_loss, self.val_step = sum(losses) / len(losses), self.step
        self.best_val_loss = min(self.best_val_loss, self.val_loss)
        return self.val_loss

    def sample(self) -> str:
        settings = Sampling(temperature=0.8, top_k=40, max_new_tokens=self.cfg.sample_tokens, seed=self.cfg.seed)
        prompt = [] if end_of_text_id(self.tokenizer) is not None else self.tokenizer.encode("\n")
        return "".join(step.text for step in generate(self.model, self.tokenizer, prompt, settings))

    def _best(self) -> float | None:
        """The best validation loss so far; None (JSON null) before the first evaluation."""
        return None if math.isinf(self.best_val_loss) else self.best_val_loss

    def _request_stop(self, signum, frame) -> None:
        self.stop_requested = True

    # --- saving and resuming ----------------------------------------------------

    def save(self) -> None:
        training = {
            "config": asdict(self.cfg), "step": self.step,
            "best_val_loss": self._best(),
            "val_loss": self.val_loss if self.val_step == self.step else None,  # of exactly these weights
        }
        save_checkpoint(self.run.folder, self.model, self.tokenizer, training)
        state = {
            "step": self.step, "best_val_loss": self.best_val_loss, "optimizer": self.optimizer.state_dict(),
            "batches": self.batches.get_state(), "torch_rng": torch.get_rng_state(),
        }
        tmp = self.run.folder / "state.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.run.folder / "state.pt")

    def _load_state(self) -> None:
        path = self.run.folder / "state.pt"
        if not path.is_file():
            raise DataError(f"{self.run.folder} has no state.pt to resume from")
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and numbers only, no code
        self.optimizer.load_state_dict(state["optimizer"])
        self.batches.set_state(state["batches"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.best_val_loss = state["step"], state["best_val_loss"]
        for name in ("metrics.jsonl", "samples.jsonl"):
            self.run.truncate_after(name, self.step)


def resume_config(folder: str | os.PathLike, **overrides) -> TrainConfig:
    """The config a run was started with (for resuming it), with e.g. max_steps raised."""
    _, training = read_config(folder)
    return TrainConfig.from_dict({**training["config"], **overrides, "out": str(folder)})
