"""`python -m lm finetune {continue,classify,instruct,dpo} --from CHECKPOINT --out RUN ...`.

Bad input (a missing checkpoint, malformed data, impossible options) is one line on stderr
and exit code 2, with nothing written; a run that fails while training exits 1 (its
status.json says why), as `lm train` does."""

from __future__ import annotations

import sys

from tqdm import tqdm

from lm import distributed
from lm.finetune.config import METHODS, FinetuneConfig, defaults, option_fields
from lm.finetune.loop import FinetuneRun, resume_settings
from lm.slots import training_slot

BAD_INPUT = 2
SHOWN = ("train_accuracy", "val_accuracy", "val_exact_match", "reward_margin")


def add_finetune_parser(commands) -> None:
    finetune = commands.add_parser(
        "finetune", help="fine-tune a checkpoint: continue, classify, instruct (SFT) or dpo, optionally with LoRA",
        description="Writes an ordinary run folder (metrics, samples, status, checkpoint, evaluation.json).",
    )
    methods = finetune.add_subparsers(dest="method", required=True)
    for method in METHODS:
        shown, other = defaults(method), defaults(method, "")
        parser = methods.add_parser(method, help=f"defaults: {', '.join(f'{k} {v}' for k, v in shown.items())}" + (
            f"; on other data: {', '.join(f'{k} {v}' for k, v in other.items() if k != 'data')}" if other != shown else ""))
        parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint, "
                            "with its own settings (flags given change them) and the LoRA layers it saved")
        for f in option_fields():
            flag = "--from" if f.name == "source" else "--" + f.name.replace("_", "-")
            kind = int if "int" in str(f.type) else float if "float" in str(f.type) else str
            parser.add_argument(flag, dest=f.name, type=kind, default=None, metavar=f.name.upper(),
                                help=f"{f.metadata['help']}" + (f" (default {f.default})" if f.default is not None else ""))
        parser.set_defaults(run=cmd_finetune)


def cmd_finetune(args) -> None:
    given = {f.name: getattr(args, f.name) for f in option_fields() if getattr(args, f.name) is not None}
    try:
        if args.resume:
            if "out" not in given:
                raise ValueError("--resume needs --out, the run folder to continue")
            cfg = resume_settings(given["out"], **given)
            if cfg.method != args.method:
                raise ValueError(f"{cfg.out} is a {cfg.method} run, not {args.method}")
        else:
            cfg = FinetuneConfig(method=args.method, **given)
        run = FinetuneRun(cfg, resume=args.resume)
    except (ValueError, OSError) as exc:  # DataError, CheckpointError, bad options: nothing has been written
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(BAD_INPUT) from None
    if run.cfg.lora_targets != cfg.lora_targets and run.world.is_main:  # resumed on the layers its adapter holds
        print(f"note: {cfg.out} saved LoRA adapters on layers that --lora-targets {cfg.lora_targets} does not name "
              f"exactly (as in a run on a mixture of experts from before mlp stopped adapting the router): it resumes "
              f"on the layers it saved, as --lora-targets {run.cfg.lora_targets}")
    try:
        with training_slot(run.cfg.out, run.cfg.max_steps):  # waits in line when the app shares the machine's slots
            train_and_report(run)
    except BaseException:
        distributed.end(finished=False)
        raise
    distributed.end()


def train_and_report(run: FinetuneRun) -> None:
    """Under torchrun every process trains; only process 0 reports."""
    cfg, main = run.cfg, run.world.is_main
    processes = f", {run.world.size} processes" if run.world.size > 1 else ""
    if main:
        print(f"{cfg.out}: {cfg.method} from {cfg.source} on {cfg.data}; {run.trainable:,} of {run.total:,} parameters "
              f"train ({run.trainable / run.total:.1%}){' with LoRA rank ' + str(cfg.lora_rank) if cfg.lora_rank else ''}; "
              f"device {run.device}{processes}")
    with tqdm(total=cfg.max_steps, initial=run.step, unit="step", disable=not main) as bar:
        def progress(record: dict) -> None:
            bar.update(record["step"] - bar.n)
            shown = {"loss": f"{record['train_loss']:.3f}"}
            if "val_loss" in record:
                shown["val"] = f"{record['val_loss']:.3f}"
            shown |= {key: f"{record[key]:.2f}" for key in SHOWN if key in record}
            bar.set_postfix(shown)

        state = run.train(progress)
    if main:
        print(f"{state} at step {run.step}; evaluation.json and the checkpoint are in {cfg.out}")
