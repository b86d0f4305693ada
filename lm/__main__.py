"""The command line: `python -m lm <command> --help` explains each command."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

from tqdm import tqdm

from lm import distributed
from lm.checkpoint import load_checkpoint, read_config
from lm.data import CORPORA, DataError, decode_text, load_corpus, read_text_file
from lm.finetune.cli import add_finetune_parser
from lm.device import available_devices, default_device, resolve_device
from lm.generate import Sampling, generate
from lm.gpt2 import SIZES, import_gpt2
from lm.hf_import import DEFAULT_CONTEXT, import_hf
from lm.hf_revisions import import_revisions, parse_revisions
from lm.plan import check_plan, with_preset
from lm.prepare import class_files, prepare
from lm.sizing import active_parameter_count, parameter_count
from lm.slots import training_slot
from lm.tasks import find_task, task_tokenizer
from lm.train_config import TrainConfig
from lm.trainer import Trainer, TrainingFailed, resume_config
from lm.tokenizer import SPLIT_PATTERN_LABELS, TIKTOKEN_ENCODINGS, BPETokenizer, TiktokenTokenizer, load_tokenizer


def read_corpus(source: str) -> str:
    """A registered corpus name (downloaded with a progress bar) or a path to a text file."""
    return load_corpus(source, progress=True) if source in CORPORA else read_text_file(source)


def open_tokenizer(spec: str):
    return TiktokenTokenizer(spec) if spec in TIKTOKEN_ENCODINGS else load_tokenizer(spec)


def cmd_download(args) -> None:
    """One file or every file the lessons use, a progress bar each, then what is there and what is not."""
    files = class_files()
    bars: dict[str, tqdm] = {}

    def progress(file, done: int, total: int) -> None:
        bar = bars.get(file.name) or bars.setdefault(
            file.name, tqdm(desc=file.title, total=total or file.size, unit="B", unit_scale=True))
        bar.update(done - bar.n)

    outcomes = prepare(list(files.values()) if args.all else [files[args.name]], progress)
    for bar in bars.values():
        bar.close()
    for outcome in outcomes:
        print(f"{'✓' if outcome.ok else '✗'} {outcome.file.title}: {outcome.state} · "
              f"{outcome.file.path if outcome.ok else outcome.message}")
    missing = [o.file for o in outcomes if not o.ok]
    if missing:
        raise OSError(f"{len(missing)} of {len(outcomes)} files are missing. Run this again on a connected machine "
                      f"and copy the files to the same places here: {', '.join(str(f.path) for f in missing)}")


def read_stdin() -> str:
    """Standard input as UTF-8 text, refused with the first bad byte named (Python's own
    reading would keep undecodable bytes as surrogates that fail later, less clearly)."""
    try:
        return decode_text(sys.stdin.buffer.read())
    except DataError as exc:
        raise DataError(f"standard input: {exc}") from None


def cmd_tokenize(args) -> None:
    tokenizer = open_tokenizer(args.tokenizer)
    text = read_stdin() if args.text == "-" else args.text
    ids = tokenizer.encode(text)
    if args.ids:
        print(" ".join(map(str, ids)))
        return
    for token_id in ids:
        print(f"{token_id:>7}  {tokenizer.token_bytes(token_id)!r}")
    print(f"{len(text):,} characters, {len(text.encode()):,} bytes, {len(ids):,} tokens with {tokenizer.name}")


def cmd_train_tokenizer(args) -> None:
    text = read_corpus(args.data)
    with tqdm(desc="merges", unit="merge") as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        tokenizer = BPETokenizer.train(text, args.vocab_size, args.pattern, progress=progress, name=Path(args.out).stem)
    tokenizer.save(args.out)
    print(f"vocabulary of {tokenizer.vocab_size:,} ({len(tokenizer.merges):,} merges) written to {args.out}")


def cmd_sample(args) -> None:
    checkpoint = load_checkpoint(args.checkpoint, device=check_device(args.device or default_device()))
    settings = Sampling(args.temperature, args.top_k, args.top_p, args.max_new_tokens, args.seed)
    tokenizer = checkpoint.tokenizer
    print(args.prompt, end="", flush=True)
    for step in generate(checkpoint.model, tokenizer, tokenizer.encode(args.prompt), settings, explain=False):
        print(step.text, end="", flush=True)
    print()


def cmd_import_gpt2(args) -> None:
    folder = import_gpt2(args.size, args.source, args.out, progress=True)
    print(f"GPT-2 written to {folder}; try:\n  python -m lm sample --checkpoint {folder} "
          f"--prompt \"Hello, I'm a language model,\"")


def cmd_import_hf(args) -> None:
    if args.revisions:
        folder = import_revisions(args.source, parse_revisions(args.revisions), args.out, args.context)
        print(f"{args.source}'s training written to {folder}; its Attention page's \"Across training\" replays it:\n"
              f"  streamlit run app.py, then Attention with the model {folder.name}")
        return
    folder = import_hf(args.source, args.out, args.revision, args.context)
    print(f"{args.source} written to {folder}; try:\n  python -m lm sample --checkpoint {folder} --prompt \"Once upon a time\"")


def cmd_train(args) -> None:
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    if args.resume:
        if not args.out:
            raise ValueError("--resume needs --out, the run folder to continue")
        cfg = resume_config(args.out, **overrides)
    else:
        options = {**(read_config_file(args.config) if args.config else {}), **overrides}
        cfg = TrainConfig.from_dict(with_preset(options))  # a task brings its own sizes and schedule, which flags override
    check_device(cfg.device)
    check_plan(cfg, planned_vocab_size(cfg, args.resume), tokens=None)  # the Train page's checks, before any work
    try:
        with training_slot(cfg.out, cfg.max_steps):  # waits in line when the app shares the machine's slots
            train_and_report(cfg, args.resume)
    except BaseException:
        distributed.end(finished=False)
        raise
    distributed.end()


def check_device(name: str) -> str:
    """The device a setting names, refused unless this machine has it."""
    device, known = resolve_device(name), available_devices()
    if device not in known and not (device == "cuda" and any(d.startswith("cuda") for d in known)):
        raise ValueError(f"this machine has no device {name!r}; it has {', '.join(known)}")
    return device


def planned_vocab_size(cfg: TrainConfig, resume: bool) -> int:
    """The vocabulary the run's model will have (at most, for a BPE not trained yet), known
    before any text is read, so that its memory can be checked first."""
    if resume:
        return read_config(cfg.out)[0].vocab_size
    if find_task(cfg.data):
        return task_tokenizer().vocab_size
    if cfg.tokenizer.startswith("bpe:"):
        if not cfg.tokenizer[4:].isdigit():
            raise ValueError(f"tokenizer {cfg.tokenizer!r}: bpe:N needs a whole number N, the vocabulary size")
        return int(cfg.tokenizer[4:])
    return open_tokenizer(cfg.tokenizer).vocab_size


def train_and_report(cfg: TrainConfig, resume: bool) -> None:
    """Under torchrun every process trains; only process 0 reports."""
    trainer = Trainer(cfg, resume=resume)
    main = trainer.world.is_main
    config = trainer.model.config
    processes = f", {trainer.world.size} processes" if trainer.world.size > 1 else ""
    if main:
        task = trainer.task_data.task if trainer.task_data else None
        data = f"{task.name} examples made as it goes" if task else f"{len(trainer.train_ids):,} training tokens"
        total, active = parameter_count(config), active_parameter_count(config)  # a mixture of experts: fewer active
        used = f" ({active / 1e6:.2f}M active per token)" if active != total else ""
        print(f"{cfg.out}: {total / 1e6:.2f}M parameters{used}, {data}, "
              f"device {trainer.device}{processes}")
    with tqdm(total=cfg.max_steps, initial=trainer.step, unit="step", disable=not main) as bar:
        def progress(record: dict) -> None:
            bar.update(record["step"] - bar.n)
            shown = {"loss": f"{record['train_loss']:.3f}", "tok/s": f"{record['tokens_per_s']:,.0f}"}
            if "val_loss" in record:
                shown["val"] = f"{record['val_loss']:.3f}"
            if "task_accuracy" in record:
                shown["accuracy"] = f"{record['task_accuracy']:.0%}"
            bar.set_postfix(shown)

        state = trainer.train(progress)
    if not main:
        return
    best = trainer.best_val_loss
    print(f"{state} at step {trainer.step}; best validation loss {best:.3f}; checkpoint in {cfg.out}" if best < float("inf")
          else f"{state} at step {trainer.step} (no validation loss yet); checkpoint in {cfg.out}")


def read_config_file(path: str) -> dict:
    """Training options from a .json or .toml file (keys as in `train --help`)."""
    kind = "TOML" if path.endswith(".toml") else "JSON"
    try:
        text = read_text_file(path)
        options = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except DataError as exc:
        raise DataError(f"config file: {exc}") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid {kind}: {exc}") from None
    if not isinstance(options, dict):
        raise ValueError(f"{path} must hold training options by name (keys as in `train --help`), not a {type(options).__name__}")
    return options


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, its help from the field; unset flags leave the config file's value."""
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f.metadata["help"])
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, default=None, metavar=f.name.upper(),
                                help=f"{f.metadata['help']} (default {f.default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lm", description="LLM Explorer's from-scratch toolkit.")
    commands = parser.add_subparsers(dest="command", required=True)

    download = commands.add_parser(
        "download", help="download a corpus or tokenizer file, or --all the lessons use; says what is missing",
        description="Files are checked against their sha256 and kept in the user's cache ($LM_DATA_DIR to move it; "
        "tiktoken's files in $TIKTOKEN_CACHE_DIR). Run it with --all on a connected machine before class.",
    )
    what = download.add_mutually_exclusive_group(required=True)
    what.add_argument("name", nargs="?", choices=list(class_files()), help="one file: a corpus, a fine-tuning data set or a tiktoken encoding")
    what.add_argument("--all", action="store_true", help="every corpus and tokenizer file the lessons and pages use")
    download.set_defaults(run=cmd_download)

    tokenize = commands.add_parser("tokenize", help="show the tokens of a text")
    tokenize.add_argument("text", help="the text, or - to read standard input")
    tokenize.add_argument(
        "--tokenizer", default="r50k_base",
        help=f"a saved tokenizer .json, or one of {', '.join(TIKTOKEN_ENCODINGS)} (default r50k_base = GPT-2)",
    )
    tokenize.add_argument("--ids", action="store_true", help="print only the ids, on one line")
    tokenize.set_defaults(run=cmd_tokenize)

    train_bpe = commands.add_parser("train-tokenizer", help="train a byte-level BPE and save it as JSON")
    train_bpe.add_argument("--data", default="tinyshakespeare", help="a corpus name (tinyshakespeare) or a text file")
    train_bpe.add_argument("--vocab-size", type=int, default=1024, help="256 bytes + merges + 1 special token")
    train_bpe.add_argument(
        "--pattern", default="gpt4", choices=list(SPLIT_PATTERN_LABELS),
        help="pre-split: " + "; ".join(f"{k} = {v}" for k, v in SPLIT_PATTERN_LABELS.items()),
    )
    train_bpe.add_argument("--out", required=True, help="where to write the tokenizer (.json)")
    train_bpe.set_defaults(run=cmd_train_tokenizer)

    train = commands.add_parser(
        "train", help="train a GPT, writing a run folder (checkpoint, metrics, samples, status)",
        description="Options come from --config (JSON or TOML), then from flags, which win.",
    )
    train.add_argument("--config", help="a .json or .toml file of the options below")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add_train_options(train)
    train.set_defaults(run=cmd_train)

    sample = commands.add_parser("sample", help="generate text from a checkpoint, streamed as it is sampled")
    sample.add_argument("--checkpoint", required=True, help="a checkpoint folder (config.json, tokenizer.json, model.safetensors)")
    sample.add_argument("--prompt", default="", help="text to continue (empty: start after <|endoftext|>)")
    sample.add_argument("--max-new-tokens", type=int, default=200, help="how many tokens to generate at most")
    sample.add_argument("--temperature", type=float, default=0.8, help="0 = always the most likely token; higher = more random")
    sample.add_argument("--top-k", type=int, default=None, help="sample only among the k most likely tokens")
    sample.add_argument("--top-p", type=float, default=None, help="sample only among the most likely tokens totalling p")
    sample.add_argument("--seed", type=int, default=None, help="the same seed gives the same text")
    sample.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the best available)")
    sample.set_defaults(run=cmd_sample)

    gpt2 = commands.add_parser(
        "import-gpt2", help="import OpenAI's GPT-2 from Hugging Face as a checkpoint folder",
        description="Downloads model.safetensors into the Hugging Face cache (once; an interrupted download "
        "resumes), or reads one you already have, and writes a checkpoint folder every page and command loads.",
    )
    gpt2.add_argument("--size", choices=list(SIZES), default="small",
                      help="; ".join(f"{name} = {spec.label}" for name, spec in SIZES.items()) + " (default small)")
    gpt2.add_argument("--from", dest="source", metavar="PATH",
                      help="a model.safetensors, or a folder with it (and config.json), instead of downloading")
    gpt2.add_argument("--out", help="the checkpoint folder to write (default: gpt2-SIZE in $LM_RUNS_DIR, else runs/)")
    gpt2.set_defaults(run=cmd_import_gpt2)

    hf = commands.add_parser(
        "import-hf", help="import an open-weight model (Llama, Qwen3, Mistral, Pythia, GPT-2) from Hugging Face",
        description="Reads config.json, the .safetensors weights (never pickles) and tokenizer.json from a folder, or "
        "downloads them into the Hugging Face cache, and writes a checkpoint folder every page and command loads.",
    )
    hf.add_argument("--from", dest="source", required=True, metavar="FOLDER_OR_HUB_ID",
                    help="a folder with the model's files, or a Hub id such as HuggingFaceTB/SmolLM2-135M")
    hf.add_argument("--out", help="the checkpoint folder to write (default: the model's name in $LM_RUNS_DIR, else runs/)")
    revision = hf.add_mutually_exclusive_group()
    revision.add_argument("--revision", help="a branch, tag or commit on the Hub (Pythia's training checkpoints: step1000 ...)")
    revision.add_argument("--revisions", metavar="STEP,STEP,...",
                          help="several training checkpoints (step0,step1000,...; from the Hub, or from --from FOLDER "
                          "holding a folder per revision) into one run folder (default: NAME-training) whose "
                          "attention the Attention page replays across training")
    hf.add_argument("--context", type=int, help=f"positions to keep (default: the model's, at most {DEFAULT_CONTEXT:,})")
    hf.set_defaults(run=cmd_import_hf)
    add_finetune_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError, TrainingFailed) as exc:  # DataError, TokenizerError, CheckpointError, bad settings
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    if distributed.world_from_env().size > 1:  # under torchrun
        distributed.exit_process(code)
    sys.exit(code)
