"""The loop every fine-tuning method shares, and the run folder it writes.

A method (classify, continue, instruct, dpo) knows its data, its loss and how to measure the
model; this loop does the rest as lm.trainer does for pretraining, from its parts: the
learning-rate schedule and AdamW groups, the run folder (status, metrics, samples, journaled
checkpoints with state.pt, resume after a stop), plus evaluation.json (the model measured
before and after). What trains: everything; the last N blocks and the final norm; or, with
LoRA, only the adapters (and a new head, which always trains). A mixture-of-experts model
keeps its load-balancing loss, with the weight it was pretrained with (lm.moe; its
moe_aux_weight), whatever the method: recorded_routes collects the routers' choices however a
method calls the model.

Several processes (`torchrun --nproc_per_node=N -m lm finetune ...`, gloo on a CPU) train as
lm train's do (lm.distributed): each takes its share of every step's batch, their gradients are
averaged before the step (by hand: the methods call the model in their own ways, such as a
classifier's hidden states, which DDP's wrapper would not see), and process 0 writes the run.

Resuming rebuilds the model as at the start (the source checkpoint, the new head, the LoRA
layers: those state.pt's adapter holds, lm.finetune.lora.resume_targets), then puts back what
trained: the run's own weights, or with LoRA the trainable tensors kept in state.pt (the
checkpoint holds them merged, which cannot be undone exactly)."""

from __future__ import annotations

import copy
import math
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from lm import distributed
from lm.atomic import write_json
from lm.attention import CausalSelfAttention
from lm.checkpoint import CONFIG_FILE, TIED, WEIGHTS_FILE, load_checkpoint, read_config
from lm.data import DataError
from lm.device import resolve_device
from lm.finetune.config import FinetuneConfig
from lm.finetune.lora import adapter_state, apply_lora, count_trainable, merge_lora, resume_targets
from lm.finetune.methods import build_method
from lm.model import GPT
from lm.moe import MoE, Route, balance_loss
from lm.run_folder import ADAPTER_FILE, EVALUATION_FILE, METRICS_FILE, SAMPLES_FILE, Run, read_record
from lm.trainer import TrainingFailed, learning_rate, make_optimizer


def choose_trainable(model: GPT, cfg) -> None:
    """What trains, as cfg (a FinetuneConfig, or anything with its LoRA and trainable_blocks
    fields) says: LoRA's adapters only, or the last blocks and the final norm, or everything."""
    if cfg.lora_rank:
        apply_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets)  # freezes everything else
    elif cfg.trainable_blocks is not None:
        blocks = model.transformer.h
        if cfg.trainable_blocks > len(blocks):
            raise ValueError(f"trainable-blocks is {cfg.trainable_blocks}, but the model has {len(blocks)} blocks")
        model.requires_grad_(False)
        for module in [*blocks[len(blocks) - cfg.trainable_blocks:], model.transformer.ln_f]:
            module.requires_grad_(True)


def set_dropout(model: GPT, p: float) -> None:
    """Every dropout in `model` set to p (its layers, and attention's own probability for the fused
    kernel), and its config: the saved checkpoint says how it trained."""
    model.config.dropout = p
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
        elif isinstance(module, CausalSelfAttention):
            module.dropout = p


@contextmanager
def recorded_routes(model: GPT):
    """Yields a list that gets every MoE layer's Route as `model` runs inside the block: a method
    may call model(x, y), model(x) or model.hidden(x), and the balance loss needs them all. Each
    layer's router is run once more on its input (a matrix of n_embd x n_experts: cheap)."""
    routes: list[Route] = []
    hooks = [layer.register_forward_pre_hook(lambda layer, args: routes.append(layer.route(args[0])))
             for layer in model.modules() if isinstance(layer, MoE)]
    try:
        yield routes
    finally:
        for hook in hooks:
            hook.remove()


class FinetuneRun:
    def __init__(self, cfg: FinetuneConfig, resume: bool = False):
        """Everything is read and checked (checkpoint, data, options) before the folder is touched."""
        self.cfg = cfg = cfg.resolved()
        self.world = world = distributed.world_from_env()  # which process of how many, under torchrun
        self.run = Run(cfg.out, writes=world.is_main)
        check_out_folder(Path(cfg.out), resume)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = distributed.process_device(resolve_device(cfg.device), world)
        distributed.start(self.device, world)
        source = load_checkpoint(cfg.source)
        if cfg.dropout is not None:
            set_dropout(source.model, cfg.dropout)
        self.tokenizer = source.tokenizer
        torch.manual_seed(cfg.seed)  # a new head and LoRA's A matrices start the same for the same seed
        self.method = build_method(cfg, source.model, self.tokenizer)  # reads the data: bad data stops here
        self.method.world = world
        self.model = self.method.model
        state = self.run.resume_state() if resume else None
        if state is not None and cfg.lora_rank:  # the layers its adapter holds, which older targets named otherwise
            cfg.lora_targets = resume_targets(self.model, state.get("trainable") or {}, cfg.lora_targets,
                                              resume_settings(cfg.out).lora_targets, cfg.lora_rank)
        self._choose_trainable()
        if state is not None:
            self._restore_weights(state)
        self.model.to(self.device)
        self.method.to(self.device)
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.saved_step = (state["step"], state["step"]) if state else (0, None)
        self.best_val_loss = state["best_val_loss"] if state else math.inf
        self.val_loss = None
        self.trainable, self.total = count_trainable(self.model)
        self.stop_requested = self.signalled = False  # stop when all processes agree; a signal has come
        if world.rank:
            torch.manual_seed(cfg.seed + world.rank)  # its own dropout; the weights all processes built alike
        if world.is_main:
            self.run.folder.mkdir(parents=True, exist_ok=True)

    def _choose_trainable(self) -> None:
        choose_trainable(self.model, self.cfg)
        for p in self.method.new_parameters():
            p.requires_grad_(True)
        if not any(p.requires_grad for p in self.model.parameters()):
            raise ValueError("nothing would train: give --trainable-blocks 1 or more, or use LoRA")

    # --- the loop ---------------------------------------------------------------------------

    def train(self, progress: Callable[[dict], None] | None = None) -> str:
        """Train to max_steps or until signalled; returns the final state (finished or stopped)."""
        cfg, run = self.cfg, self.run
        previous = {s: signal.signal(s, self._request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        run.write_status("running", step=self.step, max_steps=cfg.max_steps)
        try:
            if self.step == 0:
                self.write_evaluation("before")
            started, seconds, tokens = time.time(), 0.0, 0
            while self.step < cfg.max_steps and not self.stop_requested:
                begin = time.perf_counter()
                lr, loss, grad_norm, extras, n_tokens = self._train_step()
                seconds, tokens = seconds + time.perf_counter() - begin, tokens + n_tokens
                self.step += 1
                record = self._record_step(lr, loss, grad_norm, extras, tokens / seconds, started)
                if record is not None:
                    seconds, tokens = 0.0, 0
                    run.write_status("running", step=self.step, max_steps=cfg.max_steps)
                    if progress:
                        progress(record)
            if not distributed.replicas_agree(self.model, self.world):
                raise TrainingFailed("the processes' copies of the model differ: do not trust this run")
            state = "finished" if self.step >= cfg.max_steps else "stopped"
            if self.saved_step != self.step:
                self.save()
            self.write_evaluation("after")
            best = None if math.isinf(self.best_val_loss) else self.best_val_loss
            run.write_status(state, step=self.step, max_steps=cfg.max_steps, best_val_loss=best)
            return state
        except Exception as exc:
            error = str(exc) if isinstance(exc, TrainingFailed) else f"{type(exc).__name__}: {exc}"
            run.write_status("failed", step=self.step, max_steps=cfg.max_steps, error=error)
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _request_stop(self, signum, frame) -> None:
        self.signalled = True  # the next step tells the other processes, and all stop after it

    def _train_step(self) -> tuple[float, float, float, dict, int]:
        cfg = self.cfg
        lr = learning_rate(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        with recorded_routes(self.model) as routes:
            loss, extras, tokens = self.method.batch_loss(self.step)
        objective = loss
        if routes:  # a mixture of experts: keep the experts' load even, as pretraining did (lm.trainer)
            balance = balance_loss(routes)
            objective = loss + self.model.config.moe_aux_weight * balance
            extras = {**extras, "balance_loss": balance.item()}  # logged as lm train logs it: 1 is an even load
        objective.backward()
        params = [p for p in self.model.parameters() if p.requires_grad]
        distributed.average_gradients(params, self.world)
        # The means over all processes, and whether any was signalled: they stop at the same step.
        *means, signalled = distributed.sum_all([loss.item(), *extras.values(), float(self.signalled)], self.device,
                                                self.world)
        value, extras = means[0] / self.world.size, {k: v / self.world.size for k, v in zip(extras, means[1:])}
        self.stop_requested = self.stop_requested or signalled > 0
        if not math.isfinite(value):  # the same on every process, so all of them fail together
            raise TrainingFailed(f"the loss became {value} at step {self.step + 1}: training diverged. "
                                 f"Try a lower learning rate (now {cfg.lr:g}; try {cfg.lr / 3:.1g}).")
        clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return lr, value, grad_norm, extras, tokens * self.world.size

    def _record_step(self, lr, loss, grad_norm, extras, tokens_per_s, started) -> dict | None:
        """The step's metrics line (with the validation measures at an evaluation), a sample and
        a checkpoint at evaluations, in that order (a kill cannot lose a line a checkpoint covers)."""
        cfg = self.cfg
        evaluate_now = self.step % cfg.eval_interval == 0 or self.step == cfg.max_steps
        if not (evaluate_now or self.step % cfg.log_every == 0):
            return None
        record = {"step": self.step, "train_loss": loss, "lr": lr, "grad_norm": grad_norm,
                  "tokens_per_s": tokens_per_s, "elapsed": time.time() - started, **extras}
        if evaluate_now:
            record.update(self.evaluate())
        self.run.append(METRICS_FILE, record)
        if evaluate_now:
            text = self.method.sample()
            if text is not None:
                self.run.append(SAMPLES_FILE, {"step": self.step, "text": text})
            self.save()
        return record

    @torch.no_grad()
    def evaluate(self) -> dict:
        self.model.eval()
        measures = self.method.evaluate()
        self.val_loss = measures["val_loss"]
        self.best_val_loss = min(self.best_val_loss, self.val_loss)
        return measures

    @torch.no_grad()
    def write_evaluation(self, when: str) -> None:
        """evaluation.json's "before" (the starting model) or "after" section, on held-out data."""
        self.model.eval()
        if not self.world.is_main:
            return
        path = self.run.folder / EVALUATION_FILE
        evaluation = (read_record(path) or {}) if when == "after" else {}
        evaluation.update(method=self.cfg.method, **{when: {"step": self.step, **self.method.report()}})
        write_json(path, evaluation, allow_nan=False)

    # --- saving and resuming -----------------------------------------------------------------

    def training_record(self) -> dict:
        cfg = self.cfg
        return {
            "finetune": {"method": cfg.method, "from": cfg.source, "data": cfg.data, "lora": cfg.lora,
                         "trainable_parameters": self.trainable, "total_parameters": self.total,
                         "settings": asdict(cfg)},
            "step": self.step, "best_val_loss": None if math.isinf(self.best_val_loss) else self.best_val_loss,
        }

    def save(self) -> None:
        """The checkpoint (LoRA merged into a copy: an ordinary checkpoint), state.pt, and with
        --lora-save adapter the adapter alone, switched in as one unit."""
        model, extra = self.model, {}
        trainable = None
        if self.cfg.lora_rank:
            trainable = {n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad}
            if self.cfg.lora_save == "adapter":
                adapter = adapter_state(self.model)
                extra[ADAPTER_FILE] = lambda path: save_file(adapter, str(path))
            model = merge_lora(copy.deepcopy(self.model))
        state = {"step": self.step, "best_val_loss": self.best_val_loss, "optimizer": self.optimizer.state_dict(),
                 "trainable": trainable}
        self.run.save(model, self.tokenizer, self.training_record(), state, extra)
        self.saved_step = self.step

    def _restore_weights(self, state: dict) -> None:
        if self.cfg.lora_rank:
            saved = state.get("trainable") or {}
            params = dict(self.model.named_parameters())
            if set(saved) != {n for n, p in params.items() if p.requires_grad}:
                raise DataError(f"state.pt in {self.cfg.out} does not hold this run's LoRA adapter: it cannot be resumed")
            with torch.no_grad():
                for name, tensor in saved.items():
                    params[name].copy_(tensor)
            return
        weights = load_file(str(Path(self.cfg.out) / WEIGHTS_FILE))
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        if unexpected or set(missing) - {TIED}:
            raise DataError(f"the weights in {self.cfg.out} do not fit the model rebuilt from {self.cfg.source}")


def check_out_folder(folder: Path, resume: bool) -> None:
    """A new run needs a folder without a run in it (one the app made, holding only its launch
    files, is fine); resuming needs a checkpoint there."""
    if resume:
        if not (folder / CONFIG_FILE).is_file():
            raise DataError(f"{folder} has no checkpoint to resume from")
    elif (folder / CONFIG_FILE).exists() or (folder / METRICS_FILE).exists():
        raise DataError(f"{folder} already holds a run: choose another --out, or --resume it")


def resume_settings(folder: str, **overrides) -> FinetuneConfig:
    """The settings a fine-tuning run was started with, with e.g. max_steps raised. A run from
    before --dropout resumes with the dropout it trained with, which its model config holds
    (left None, the synthetic set's default of none would switch it off halfway)."""
    config, training = read_config(folder)
    settings = (training.get("finetune") or {}).get("settings")
    if not isinstance(settings, dict):
        raise DataError(f"{folder} is not a fine-tuning run: there is nothing to resume with `lm finetune`")
    return FinetuneConfig.from_dict({"dropout": config.dropout, **settings, **overrides, "out": str(folder)})
