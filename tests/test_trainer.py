"""Tests for lm.trainer and `python -m lm train`: the schedule and the optimizer
groups, learning, the run folder as another process sees it, stop / crash /
resume, failures, the config checks, the command line, and the token data the
loop draws its batches from."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pytest
import torch

from lm.__main__ import main
from lm.checkpoint import load_checkpoint
from lm.data import DataError, data_dir, encode_corpus, random_batch, split_tokens
from lm.model import GPT, GPTConfig
from lm.tokenizer import TiktokenTokenizer, load_tokenizer
from lm.trainer import TrainConfig, Trainer, TrainingFailed, learning_rate, make_optimizer, resume_config
from tests.checkpoints import shakespeare_bpe
from tests.helpers import read_jsonl

REPO = Path(__file__).resolve().parents[1]
VOCAB = 320  # shakespeare_bpe()'s vocabulary, already a multiple of 64 (the trainer rounds up to one)


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokenizer") / "bpe.json"
    shakespeare_bpe().save(path)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shakespeare_text) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "shakespeare-20k.txt"
    path.write_text(shakespeare_text[:20_000], encoding="utf-8")
    return path


TINY = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=4, sample_every=0, device="cpu")


@pytest.fixture
def make_config(tmp_path, corpus, tokenizer_file):
    """A tiny run (1 layer, 32 wide, context 32) in tmp_path/<name>, with overrides."""

    def make(name: str = "run", **overrides) -> TrainConfig:
        settings = TINY | dict(
            out=str(tmp_path / name), data=str(corpus), tokenizer=str(tokenizer_file), max_steps=6, lr=3e-3,
            min_lr=3e-4, warmup_steps=2, log_every=1, eval_every=3, eval_batches=2, sample_tokens=8, seed=0,
        )
        return TrainConfig(**(settings | overrides))

    return make


def read_status(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "status.json").read_text(encoding="utf-8"))


def cli(**options) -> list[str]:
    """`python -m lm train` with a flag per option, on one thread."""
    flags = [item for k, v in (options | dict(threads=1)).items() for item in ("--" + k.replace("_", "-"), str(v))]
    return [sys.executable, "-m", "lm", "train", *flags]


# --- the learning-rate schedule ---------------------------------------------------------

SCHEDULE = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110)


def test_warmup_rises_linearly_from_lr_over_warmup_to_lr():
    assert [learning_rate(s, SCHEDULE) for s in range(10)] == pytest.approx([1e-4 * (s + 1) for s in range(10)])


def test_cosine_decay_goes_from_lr_to_min_lr_at_max_steps_and_stays():
    at = lambda step: learning_rate(step, SCHEDULE)  # noqa: E731
    assert at(10) == pytest.approx(1e-3)
    assert at(35) == pytest.approx(1e-4 + 9e-4 * (1 + math.cos(math.pi / 4)) / 2)  # a quarter of the way
    assert at(60) == pytest.approx((1e-3 + 1e-4) / 2)  # halfway: the mean of lr and min_lr
    assert at(110) == pytest.approx(1e-4)
    assert at(500) == pytest.approx(1e-4)
    decay = [at(s) for s in range(10, 111)]
    assert all(a > b for a, b in zip(decay, decay[1:]))


def test_without_warmup_the_first_step_takes_the_full_lr():
    assert learning_rate(0, TrainConfig(lr=2e-3, warmup_steps=0, max_steps=10)) == pytest.approx(2e-3)


# --- the optimizer --------------------------------------------------------------------


def small_model(bias: bool = True) -> GPT:
    return GPT(GPTConfig(vocab_size=64, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=bias))


def is_matrix(name: str) -> bool:
    """By name, independently of tensor shapes: embeddings and Linear weights, not biases
    or LayerNorm gains (the modules named ln_*)."""
    return name.endswith(".weight") and not name.split(".")[-2].startswith("ln_")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_optimizer_decays_weight_matrices_and_embeddings_only(bias):
    model = small_model(bias)
    names = {id(p): name for name, p in model.named_parameters()}  # the tied head is listed once
    decay, no_decay = make_optimizer(model, TrainConfig(weight_decay=0.1), "cpu").param_groups
    expected = {n for n in names.values() if is_matrix(n)}
    assert len(expected) == 2 + 4 * 2  # wte, wpe; per block c_attn, attn.c_proj, c_fc, mlp.c_proj
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    assert [names[id(p)] for p in decay["params"]] == [n for n in names.values() if n in expected]
    assert [names[id(p)] for p in no_decay["params"]] == [n for n in names.values() if n not in expected]


def test_weight_decay_shrinks_matrices_and_spares_biases_and_norms():
    model = small_model()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-1, 1)  # non-zero biases, gains other than 1: decay would show
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = make_optimizer(model, TrainConfig(lr=0.5, weight_decay=0.1), "cpu")
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # Adam's step is then 0: only the decay moves weights
    optimizer.step()
    for name, p in model.named_parameters():
        factor = 1 - 0.5 * 0.1 if is_matrix(name) else 1.0
        torch.testing.assert_close(p.detach(), before[name] * factor, rtol=0, atol=1e-7)


def test_an_optimizer_step_bumps_every_weights_version():
    """The fused AdamW writes the weights in place without bumping their version counters;
    make_optimizer bumps them, since readers of a weight keyed by its version (generate's
    cached output head) would otherwise keep what the weights were before the step."""
    model = small_model()
    optimizer = make_optimizer(model, TrainConfig(lr=0.1), "cpu")
    assert optimizer.defaults["fused"]  # the case the bump is there for
    before = {name: p._version for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    assert all(p._version > before[name] for name, p in model.named_parameters())


# --- training ---------------------------------------------------------------------------


@pytest.mark.slow
def test_overfits_a_tiny_repeated_text(tmp_path, shakespeare_text, make_config):
    text = tmp_path / "repeated.txt"
    text.write_text(shakespeare_text[:500] * 4, encoding="utf-8")  # 2 kB: 500 characters, four times
    cfg = make_config(data=str(text), n_layer=2, batch_size=16, max_steps=300, lr=1e-2, min_lr=1e-3,
                      warmup_steps=10, log_every=50, eval_every=300, eval_batches=4)
    assert Trainer(cfg).train() == "finished"
    metrics = read_jsonl(Path(cfg.out) / "metrics.jsonl")
    assert metrics[0]["train_loss"] > 1.0  # it had something to learn
    assert metrics[-1]["step"] == 300
    assert metrics[-1]["train_loss"] < 0.3
    assert metrics[-1]["val_loss"] < 0.3  # the held-out end repeats the text too


def test_run_folder_is_readable_while_training_and_records_the_finished_run(make_config):
    cfg = make_config(max_steps=6, log_every=2, eval_every=3, sample_every=2)
    run = Path(cfg.out)
    seen = []  # what another process would read at each logged step

    def progress(record):
        seen.append((record, read_jsonl(run / "metrics.jsonl")[-1], read_status(run)))

    assert Trainer(cfg).train(progress) == "finished"

    assert [record["step"] for record, _, _ in seen] == [2, 3, 4, 6]  # log_every, plus every eval_every
    for record, last_line, status in seen:
        assert last_line == record  # flushed before anyone is told
        assert (status["state"], status["step"], status["max_steps"]) == ("running", record["step"], 6)
        evaluated = record["step"] in (3, 6)
        assert set(record) == {"step", "train_loss", "lr", "grad_norm", "tokens_per_s", "elapsed"} | (
            {"val_loss"} if evaluated else set()
        )
        assert record["lr"] == pytest.approx(learning_rate(record["step"] - 1, cfg))  # the lr that step used
        assert record["grad_norm"] > 0 and record["tokens_per_s"] > 0 and record["elapsed"] >= 0
    assert seen[0][0]["train_loss"] == pytest.approx(math.log(VOCAB), abs=0.25)  # near-uniform at the start

    metrics = read_jsonl(run / "metrics.jsonl")
    best = min(m["val_loss"] for m in metrics if "val_loss" in m)
    status = read_status(run)
    assert (status["state"], status["step"], status["best_val_loss"]) == ("finished", 6, best)

    samples = read_jsonl(run / "samples.jsonl")
    assert [s["step"] for s in samples] == [2, 4, 6]
    assert all(isinstance(s["text"], str) for s in samples)

    checkpoint = load_checkpoint(run)
    final_val = metrics[-1]["val_loss"]  # the last step is evaluated, then saved: these weights
    assert checkpoint.training == {"config": asdict(cfg), "step": 6, "best_val_loss": best, "val_loss": final_val}
    assert json.loads((run / "config.json").read_text())["training"] == checkpoint.training


class Crash(Exception):
    pass


@pytest.mark.parametrize("interruption", ["stop", "crash", "extend"])
def test_a_resumed_run_matches_an_uninterrupted_one(make_config, interruption):
    """Weights, AdamW moments, the batch order and dropout's random numbers all carry over.
    stop: stop_requested at step 4 (as SIGTERM does), resume there. crash: an exception at
    step 5, resume from the checkpoint of step 3, dropping the lines logged after it.
    extend: finish at 4, then resume_config(max_steps=8) (constant lr: cosine depends on max_steps)."""
    schedule = dict(min_lr=3e-3) if interruption == "extend" else dict(min_lr=3e-4, warmup_steps=2)
    settings = dict(max_steps=8, log_every=1, eval_every=3, sample_every=2, dropout=0.1, **schedule)
    straight = make_config("straight", **settings)
    Trainer(straight).train()

    first = make_config("resumed", **(settings | (dict(max_steps=4) if interruption == "extend" else {})))
    trainer = Trainer(first)

    def interrupt(record):
        if interruption == "stop" and record["step"] == 4:
            trainer.stop_requested = True
        if interruption == "crash" and record["step"] == 5:
            raise Crash

    if interruption == "crash":
        with pytest.raises(Crash):
            trainer.train(interrupt)
    else:
        assert trainer.train(interrupt) == ("stopped" if interruption == "stop" else "finished")
    resumed = Trainer(resume_config(first.out, max_steps=8), resume=True)
    assert resumed.step == (3 if interruption == "crash" else 4)
    assert resumed.train() == "finished"

    def logged(cfg):
        return [(m["step"], m["train_loss"], m["lr"], m["grad_norm"]) for m in read_jsonl(Path(cfg.out) / "metrics.jsonl")]

    assert logged(first) == logged(straight)  # exactly, every step, none twice
    assert read_jsonl(Path(first.out) / "samples.jsonl") == read_jsonl(Path(straight.out) / "samples.jsonl")
    a, b = load_checkpoint(straight.out).model.state_dict(), load_checkpoint(first.out).model.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_the_same_seed_gives_the_same_weights_and_batches(make_config):
    a, b, other = Trainer(make_config("a", seed=7)), Trainer(make_config("b", seed=7)), Trainer(make_config("c", seed=8))
    assert a.model.config.vocab_size == VOCAB
    weights = lambda t: t.model.state_dict()  # noqa: E731
    assert all(torch.equal(weights(a)[k], weights(b)[k]) for k in weights(a))
    assert not torch.equal(weights(a)["transformer.wte.weight"], weights(other)["transformer.wte.weight"])
    batches = [[random_batch(t.train_ids, 4, 32, t.batches)[0] for _ in range(3)] for t in (a, b, other)]
    assert all(torch.equal(x, y) for x, y in zip(batches[0], batches[1]))
    assert not torch.equal(batches[0][0], batches[2][0])


def test_a_nan_loss_fails_the_run_with_advice(make_config):
    # lr 1e6 with weight decay 0.1 multiplies each matrix by 1 - 1e5 per step: inf within a few steps.
    cfg = make_config(lr=1e6, min_lr=0.0, warmup_steps=0, max_steps=50, eval_every=50)
    with pytest.raises(TrainingFailed, match="learning rate") as failure:
        Trainer(cfg).train()
    status = read_status(cfg.out)
    assert status["state"] == "failed"
    assert status["error"] == str(failure.value)
    assert 0 <= status["step"] < 50


def test_an_unexpected_exception_fails_the_run_with_its_message(make_config, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("lm.run_folder.commit", full_disk)
    cfg = make_config(eval_every=2)  # the first save is at step 2
    with pytest.raises(OSError, match="No space left"):
        Trainer(cfg).train()
    status = read_status(cfg.out)
    assert (status["state"], status["step"], status["error"]) == ("failed", 2, "OSError: No space left on device")


def test_status_is_strict_json_when_stopped_before_any_evaluation(make_config):
    """Other programs (a browser, jq) read status.json: no NaN or Infinity literals."""
    trainer = Trainer(make_config(eval_every=100, max_steps=100))
    assert trainer.train(lambda record: setattr(trainer, "stop_requested", True)) == "stopped"

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    status = json.loads((Path(trainer.cfg.out) / "status.json").read_text(), parse_constant=refuse)
    assert (status["state"], status["step"]) == ("stopped", 1)


@pytest.mark.parametrize("characters, part", [(40, "training"), (300, "validation")], ids=["train", "val"])
def test_a_text_shorter_than_the_context_is_refused(tmp_path, make_config, shakespeare_text, characters, part):
    text = tmp_path / "short.txt"
    text.write_text(shakespeare_text[:characters], encoding="utf-8")
    with pytest.raises(DataError, match=rf"the {part} part of the text has \d+ tokens.*context of 32"):
        Trainer(make_config(data=str(text)))


def test_split_tokens_holds_out_the_end_and_needs_a_window_in_each_part():
    ids = np.arange(100)
    train, val = split_tokens(ids, 0.1, block_size=9)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
    with pytest.raises(DataError, match="validation part of the text has 10 tokens"):
        split_tokens(ids, 0.1, block_size=10)


# --- configuration ----------------------------------------------------------------------


def test_the_default_config_and_edge_values_pass_the_checks():
    cfg = TrainConfig()
    assert cfg.check() is cfg
    TrainConfig(min_lr=1e-3, lr=1e-3, warmup_steps=0, sample_every=0, grad_clip=0.0, weight_decay=0.0).check()


@pytest.mark.parametrize(
    "field, value",
    [
        ("batch_size", 0), ("grad_accum", 0), ("max_steps", 0), ("log_every", 0), ("eval_every", -1),
        ("eval_batches", 0), ("val_fraction", 0.0), ("val_fraction", 1.0), ("lr", 0.0), ("min_lr", -1e-4),
        ("min_lr", 1.0), ("n_embd", 30), ("dropout", 1.0), ("n_layer", 0),
        # Accepted today, yet meaningless, or only failing later (AdamW at start-up, the first sample):
        ("warmup_steps", -1), ("weight_decay", -0.1), ("beta1", 1.0), ("beta2", -0.5), ("sample_every", -1),
        ("sample_tokens", -1), ("threads", -1),
        # A JSON config file may hold a number as a string: a clear error, not a TypeError.
        pytest.param("batch_size", "16", id="batch_size-as-string"),
    ],
)
def test_check_refuses_a_bad_value_and_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value}).check()


def test_from_dict_round_trips_and_refuses_unknown_keys():
    cfg = TrainConfig(lr=5e-4, n_layer=2, bias=False)
    assert TrainConfig.from_dict(asdict(cfg)) == cfg
    with pytest.raises(ValueError, match="unknown training options: epochs, learning_rate"):
        TrainConfig.from_dict({"lr": 1e-3, "learning_rate": 1e-3, "epochs": 3})


# --- the command line -------------------------------------------------------------------


def write_config(path: Path, options: dict) -> Path:
    if path.suffix == ".toml":  # json.dumps writes TOML's literals for these strings, numbers and booleans
        path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items()), encoding="utf-8")
    else:
        path.write_text(json.dumps(options), encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_cli_trains_from_a_config_file_and_flags_win(tmp_path, corpus, tokenizer_file, suffix):
    options = TINY | dict(data=str(corpus), tokenizer=str(tokenizer_file), block_size=16, max_steps=1000, lr=5e-3,
                          bias=True, eval_every=2, eval_batches=1, threads=1)
    config_file = write_config(tmp_path / f"train{suffix}", options)
    out = tmp_path / "run"
    flags = ["--out", str(out), "--max-steps", "2", "--lr", "0.01", "--no-bias"]
    assert main(["train", "--config", str(config_file), *flags]) == 0
    expected = TrainConfig(**(options | dict(out=str(out), max_steps=2, lr=0.01, bias=False)))
    assert load_checkpoint(out).training["config"] == asdict(expected)
    assert load_checkpoint(out).model.config.bias is False
    assert read_status(out)["state"] == "finished"


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.json", "{not json", "bad.json is not valid JSON"),
        ("bad.toml", "lr = = 1", "bad.toml is not valid TOML"),
        ("typo.json", '{"learning_rate": 0.1}', "unknown training options: learning_rate"),
    ],
)
def test_cli_refuses_a_bad_config_file_with_a_message(tmp_path, capsys, name, content, message):
    (tmp_path / name).write_text(content, encoding="utf-8")
    assert main(["train", "--config", str(tmp_path / name), "--out", str(tmp_path / "run")]) == 1
    assert message in capsys.readouterr().err


def test_cli_help_lists_every_option_with_its_help(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    unwrapped = "".join(capsys.readouterr().out.split())  # argparse wraps lines wherever it likes
    for f in fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in unwrapped
        assert "".join(f.metadata["help"].split()) in unwrapped


def wait_for(condition, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"the run ended early with exit code {process.returncode}"
        assert time.monotonic() < deadline, "the run did not get going in time"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_stops_a_cli_run_with_a_loadable_checkpoint(tmp_path, corpus):
    out = tmp_path / "run"
    command = cli(**TINY, data=corpus, tokenizer="bpe:300", out=out, max_steps=10**6, eval_every=10**6, log_every=1)
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        process = subprocess.Popen(command, cwd=REPO, stdout=stdout, stderr=stderr)
        try:
            wait_for(lambda: (out / "metrics.jsonl").is_file(), process)
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        finally:
            process.kill()
    assert process.returncode == 0, (tmp_path / "stderr").read_text()
    status = read_status(out)
    assert status["state"] == "stopped"
    checkpoint = load_checkpoint(out)
    assert 1 <= checkpoint.training["step"] == status["step"] < 10**6
    assert checkpoint.tokenizer.vocab_size == 300 and checkpoint.model.config.vocab_size == VOCAB
    assert f"stopped at step {status['step']}" in (tmp_path / "stdout").read_text()


@pytest.mark.slow
def test_cli_reports_a_diverging_run_and_exits_non_zero(tmp_path, corpus, tokenizer_file):
    out = tmp_path / "run"
    command = cli(**TINY, data=corpus, tokenizer=tokenizer_file, out=out, max_steps=50, lr=1e6, min_lr=0, warmup_steps=0)
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert read_status(out)["state"] == "failed"
    assert "learning rate" in result.stderr
    # DESIGN.md: a NaN loss is bad input, which gets a clear message, not a traceback.
    assert "Traceback" not in result.stderr, result.stderr


# --- token data --------------------------------------------------------------------------


def test_encode_corpus_caches_the_ids_per_text_and_tokenizer(tmp_path, monkeypatch, shakespeare_text, tokenizer_file):
    monkeypatch.setenv("LM_DATA_DIR", str(tmp_path))
    text, bpe = shakespeare_text[:5000], load_tokenizer(tokenizer_file)
    ids = encode_corpus(text, bpe)
    assert ids.dtype == np.uint16 and ids.tolist() == bpe.encode(text)
    cached = list((data_dir() / "tokens").glob("*.npy"))
    assert len(cached) == 1 and np.array_equal(np.load(cached[0]), ids)

    monkeypatch.setattr(bpe, "encode", lambda text: pytest.fail("encoded again instead of loading the cache"))
    assert np.array_equal(encode_corpus(text, bpe), ids)

    gpt2 = TiktokenTokenizer("r50k_base")  # another tokenizer: its own ids, its own file
    assert encode_corpus(text, gpt2).tolist() == gpt2.encode(text)
    assert len(list((data_dir() / "tokens").glob("*.npy"))) == 2


def test_random_batch_targets_are_the_inputs_shifted_by_one_inside_the_data():
    ids = np.random.default_rng(0).permutation(40).astype(np.uint16)  # distinct: a value gives its position
    position = {int(v): i for i, v in enumerate(ids)}
    generator, starts = torch.Generator().manual_seed(0), set()
    for _ in range(50):
        x, y = random_batch(ids, 8, 6, generator)
        assert x.shape == y.shape == (8, 6) and x.dtype == y.dtype == torch.int64
        for inputs, targets in zip(x.tolist(), y.tolist()):
            s = position[inputs[0]]
            assert inputs == ids[s : s + 6].tolist() and targets == ids[s + 1 : s + 7].tolist()
            starts.add(s)
    assert starts == set(range(40 - 6))  # every window that has a target for its last token, and no other


def test_a_step_counts_the_tokens_it_read(make_config):
    trainer = Trainer(make_config(batch_size=3, grad_accum=2))
    assert trainer._train_step()[3] == 3 * 2 * trainer.cfg.block_size
