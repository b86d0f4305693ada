"""The command line: `python -m lm <command> --help` explains each command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from lm.checkpoint import load_checkpoint
from lm.data import CORPORA, fetch_corpus, load_corpus, read_text_file
from lm.device import default_device
from lm.generate import Sampling, generate
from lm.tokenizer import SPLIT_PATTERN_LABELS, TIKTOKEN_ENCODINGS, BPETokenizer, TiktokenTokenizer, load_tokenizer


def read_corpus(source: str) -> str:
    """A registered corpus name (downloaded with a progress bar) or a path to a text file."""
    return load_corpus(source, progress=True) if source in CORPORA else read_text_file(source)


def open_tokenizer(spec: str):
    return TiktokenTokenizer(spec) if spec in TIKTOKEN_ENCODINGS else load_tokenizer(spec)


def cmd_download(args) -> None:
    print(fetch_corpus(args.corpus, progress=True))


def cmd_tokenize(args) -> None:
    tokenizer = open_tokenizer(args.tokenizer)
    text = sys.stdin.read() if args.text == "-" else args.text
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
    checkpoint = load_checkpoint(args.checkpoint, device=args.device or default_device())
    settings = Sampling(args.temperature, args.top_k, args.top_p, args.max_new_tokens, args.seed)
    tokenizer = checkpoint.tokenizer
    print(args.prompt, end="", flush=True)
    for step in generate(checkpoint.model, tokenizer, tokenizer.encode(args.prompt), settings):
        print(step.text, end="", flush=True)
    print()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lm", description="LLM Explorer's from-scratch toolkit.")
    commands = parser.add_subparsers(dest="command", required=True)

    download = commands.add_parser("download", help="download a corpus into the cache and print its path")
    download.add_argument("corpus", choices=sorted(CORPORA))
    download.set_defaults(run=cmd_download)

    tokenize = commands.add_parser("tokenize", help="show the tokens of a text")
    tokenize.add_argument("text", help="the text, or - to read standard input")
    tokenize.add_argument(
        "--tokenizer", default="r50k_base",
        help=f"a saved tokenizer .json, or one of {', '.join(TIKTOKEN_ENCODINGS)} (default r50k_base = GPT-2)",
    )
    tokenize.add_argument("--ids", action="store_true", help="print only the ids, on one line")
    tokenize.set_defaults(run=cmd_tokenize)

    train = commands.add_parser("train-tokenizer", help="train a byte-level BPE and save it as JSON")
    train.add_argument("--data", default="tinyshakespeare", help="a corpus name (tinyshakespeare) or a text file")
    train.add_argument("--vocab-size", type=int, default=1024, help="256 bytes + merges + 1 special token")
    train.add_argument(
        "--pattern", default="gpt4", choices=list(SPLIT_PATTERN_LABELS),
        help="pre-split: " + "; ".join(f"{k} = {v}" for k, v in SPLIT_PATTERN_LABELS.items()),
    )
    train.add_argument("--out", required=True, help="where to write the tokenizer (.json)")
    train.set_defaults(run=cmd_train_tokenizer)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as exc:  # DataError, TokenizerError, CheckpointError, bad settings
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
