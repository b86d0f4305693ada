"""Tests for lm.tasks and task runs: the examples and their batches, the exact-match accuracy
(against an oracle and against real greedy generation), what a task run writes (accuracy,
probe, attention snapshots, detector scores) and how resuming trims it, the command line's
task presets, the copy task growing an induction head, and the Train page's task choice
and accuracy chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from explorer.lesson_steps import best_induction_head
from explorer.lessons import shipped_lessons
from explorer.training_view import accuracy_figure, has_task_accuracy
from lm.__main__ import main
from lm.attention import Probe
from lm.checkpoint import load_checkpoint
from lm.detectors import DETECTORS, attention_weights, head_scores, repeated_random_tokens
from lm.generate import Sampling, generate
from lm.lens import logit_lens
from lm.model import GPT, GPTConfig, GPTOutput
from lm.patching import activation_patching
from lm.run_folder import TRAIN_CONFIG_FILE, snapshot_steps
from lm.tasks import (
    HELD_OUT, LETTERS, TASKS, TaskData, TaskError, exact_matches, probe_vocabulary, prompt_length, task_tokenizer,
)
from lm.trainer import TrainConfig, Trainer, resume_config
from tests.test_train_page import fake_run, open_train, wait_until_ended
from tests.helpers import read_jsonl

EQUALS, END = ord("="), 256  # the tokens of "=" and <|endoftext|> in the one-token-per-byte tokenizer


def reference_answer(task: str, prompt: str) -> str:
    """Each task's answer, computed here independently of lm.tasks."""
    if task == "copy":  # the string and one of its letters again: the rest of the string from there
        return prompt[:-1].split(prompt[-1])[1]
    symbols = prompt.removesuffix("=")
    if task == "reverse":
        return "".join(reversed(symbols))
    if task == "sort":
        return "".join(sorted(symbols))
    while "()" in symbols:  # brackets: balanced iff repeatedly deleting "()" leaves nothing
        symbols = symbols.replace("()", "")
    return "no" if symbols else "yes"


def examples(task: str, seed: int, n: int = 300) -> list[tuple[str, str]]:
    generator = torch.Generator().manual_seed(seed)
    return [TASKS[task].example(generator) for _ in range(n)]


# --- examples and batches -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TASKS))
def test_examples_are_right_reproducible_and_fit_the_context(name):
    task, made = TASKS[name], examples(name, seed=7)
    assert made == examples(name, seed=7) and made != examples(name, seed=8)
    for prompt, answer in made:
        if name == "copy":
            assert prompt[-1] in prompt[:-2] and "=" not in prompt  # a letter again, with one after it
        else:
            assert prompt.count("=") == 1 and prompt.endswith("=")
        assert answer == reference_answer(name, prompt)
        if name != "brackets":  # distinct letters: each has one place to be found
            assert len(set(prompt[:-1])) == len(prompt) - 1 and prompt[:-1].isalpha()
    # the model is fed every token but the last <|endoftext|>; the longest fills the task's context
    assert max(len(p) + len(a) for p, a in made) == task.context
    assert task.preset["block_size"] >= task.context
    assert task.description and "\n" not in task.description


def test_the_copy_repeat_starts_at_any_letter_so_no_position_gives_the_answer_away():
    made = examples("copy", seed=0, n=2000)
    assert {prompt.index(prompt[-1]) for prompt, _ in made} == set(range(7))  # where the repeated letter was
    assert {len(prompt) - 1 for prompt, _ in made} == set(range(4, 9))


def test_the_induction_probe_is_a_copy_example_that_fills_the_presets_context():
    """The detector probes a copy model with its letters shown twice (as long as the context allows):
    exactly an example of the task whose repeat starts at the first letter."""
    tokenizer, task = task_tokenizer(), TASKS["copy"]
    block_size = task.preset["block_size"]
    vocabulary = probe_vocabulary({"config": {"data": "task:copy"}}, tokenizer, block_size)
    probe = tokenizer.decode(repeated_random_tokens(vocabulary, block_size // 2))
    prompt = probe[: prompt_length(task, probe)]
    assert len(probe) == block_size and prompt + task.solve(prompt) == probe


def test_bracket_examples_are_half_balanced():
    answers = [answer for _, answer in examples("brackets", seed=0, n=1000)]
    assert 0.4 < answers.count("yes") / len(answers) < 0.6


def test_batches_mask_the_prompt_and_pad_with_end_of_text():
    data = TaskData(TASKS["reverse"], task_tokenizer(), block_size=32)
    x, y = data.collate([("ab=", "ba"), ("xyz=", "zyx")])
    a, b, x_, y_, z = (ord(c) for c in "abxyz")
    assert x.tolist() == [[a, b, EQUALS, b, a, END, END], [x_, y_, z, EQUALS, z, y_, x_]]
    assert y.tolist() == [[-1, -1, b, a, END, -1, -1], [-1, -1, -1, z, y_, x_, END]]


def test_training_never_draws_a_held_out_prompt():
    task = TASKS["brackets"]  # few distinct prompts: unfiltered draws do hit the held-out ones
    data = TaskData(task, task_tokenizer(), block_size=16)
    unfiltered = examples("brackets", seed=3, n=2000)
    assert any(prompt in data.held_out_prompts for prompt, _ in unfiltered)
    drawn = data.training_examples(2000, torch.Generator().manual_seed(3))
    assert not any(prompt in data.held_out_prompts for prompt, _ in drawn)
    assert len(data.held_out) == HELD_OUT


def test_the_held_out_set_is_the_same_for_every_run():
    tokenizer = task_tokenizer()
    assert TaskData(TASKS["sort"], tokenizer, 32).held_out == TaskData(TASKS["sort"], tokenizer, 25).held_out


def test_a_task_needs_its_context_and_an_unknown_task_is_named():
    with pytest.raises(TaskError, match="needs a context of at least 16 tokens, not 8"):
        TrainConfig(data="task:copy", block_size=8).check()
    with pytest.raises(ValueError, match="unknown task 'nope'; known: task:copy, task:reverse, task:sort, task:brackets"):
        TrainConfig(data="task:nope").check()


# --- accuracy -------------------------------------------------------------------------------


class Oracle(torch.nn.Module):
    """A stand-in model that reads each prompt and puts all its weight on the right next token,
    except at the answer positions `corrupt(prompt)` names (len(answer) = the final <|endoftext|>)."""

    def __init__(self, task: str, vocab_size: int = 320, corrupt=lambda prompt: ()):
        super().__init__()
        self.task, self.vocab_size, self.corrupt = task, vocab_size, corrupt

    def forward(self, idx, targets=None, **_):
        logits = torch.zeros(*idx.shape, self.vocab_size)
        for row, ids in enumerate(idx.tolist()):
            text = bytes(i for i in ids if i < 256).decode()
            if self.task == "copy":  # up to the first letter seen before
                prompt = text[: next(i for i, c in enumerate(text) if c in text[:i]) + 1]
            else:
                prompt = text[: text.index("=") + 1]
            answer = [ord(c) for c in reference_answer(self.task, prompt)] + [END]
            for k, token in enumerate(answer):
                position = len(prompt) - 1 + k
                if position < idx.shape[1]:
                    logits[row, position, (token + 1) % 256 if k in self.corrupt(prompt) else token] = 50.0
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)
        return GPTOutput(logits, loss)


@pytest.mark.parametrize("name", list(TASKS))
def test_accuracy_of_an_oracle_is_1_and_of_a_wrong_one_0(name):
    data = TaskData(TASKS[name], task_tokenizer(), TASKS[name].context)
    loss, accuracy = data.evaluate(Oracle(name))
    assert accuracy == 1.0 and loss < 1e-6
    assert data.evaluate(Oracle(name, corrupt=lambda p: {0}))[1] == 0.0
    never_stops = Oracle(name, corrupt=lambda p: {len(reference_answer(name, p))})
    assert data.evaluate(never_stops)[1] == 0.0  # the right answer, then no <|endoftext|>: wrong


def test_accuracy_counts_the_examples_answered_exactly_right():
    data = TaskData(TASKS["reverse"], task_tokenizer(), 25)
    last_letter_wrong = Oracle("reverse", corrupt=lambda p: {len(p) - 2} if p[0] < "m" else ())
    expected = sum(prompt[0] >= "m" for prompt, _ in data.held_out) / len(data.held_out)
    assert 0.2 < expected < 0.8
    assert data.evaluate(last_letter_wrong)[1] == pytest.approx(expected)


def test_a_padded_vocabularys_extra_rows_are_never_the_answer():
    logits = torch.zeros(1, 2, 320)
    logits[0, :, 300] = 9.0  # a padding row, no token: greedy generation never picks it
    logits[0, 0, 5] = logits[0, 1, 7] = 1.0
    targets = torch.tensor([[5, 7]])
    assert exact_matches(logits, targets, n_tokens=257).tolist() == [True]
    assert exact_matches(logits, targets, n_tokens=320).tolist() == [False]


# --- task runs ------------------------------------------------------------------------------


@pytest.fixture
def task_config(tmp_path):
    def make(name: str = "run", **overrides) -> TrainConfig:
        settings = dict(
            out=str(tmp_path / name), data="task:copy", n_layer=2, n_head=2, n_embd=32, block_size=24, batch_size=8,
            max_steps=6, lr=3e-3, min_lr=3e-4, warmup_steps=2, log_every=1, eval_every=3, sample_every=3,
            snapshot_every=2, seed=0, device="cpu",
        )
        return TrainConfig(**(settings | overrides))

    return make


def test_a_task_run_logs_accuracy_and_snapshots_attention(task_config):
    cfg = task_config()
    assert Trainer(cfg).train() == "finished"
    folder = Path(cfg.out)
    metrics = read_jsonl(folder / "metrics.jsonl")
    assert [r["step"] for r in metrics if "task_accuracy" in r] == [r["step"] for r in metrics if "val_loss" in r] == [3, 6]
    assert all(0 <= r["task_accuracy"] <= 1 for r in metrics if "task_accuracy" in r)

    tokenizer, checkpoint = task_tokenizer(), load_checkpoint(folder)
    probe = json.loads((folder / "probe.json").read_text())
    assert probe["ids"] == TaskData(TASKS["copy"], tokenizer, 24).probe() and len(probe["ids"]) <= 24
    assert "".join(probe["tokens"]) == tokenizer.decode(probe["ids"])

    assert snapshot_steps(folder) == [0, 2, 4, 6]
    T = len(probe["ids"])
    for step in (0, 2, 4, 6):
        attention = load_file(str(folder / "attention" / f"step_{step:07d}.safetensors"))["attention"]
        assert attention.dtype == torch.float16 and attention.shape == (2, 2, T, T)
        assert torch.allclose(attention.float().sum(-1), torch.ones(2, 2, T), atol=2e-3)
        assert not attention.float().triu(diagonal=1).any()  # causal: nothing from the future
    torch.manual_seed(0)  # the trainer's initialisation, rebuilt here: step 0 shows the untrained heads
    untrained = GPT(GPTConfig(vocab_size=320, block_size=24, n_layer=2, n_head=2, n_embd=32))
    first = load_file(str(folder / "attention" / "step_0000000.safetensors"))["attention"]
    assert torch.allclose(first.float(), attention_weights(untrained, probe["ids"]), atol=1e-3)
    last = load_file(str(folder / "attention" / "step_0000006.safetensors"))["attention"]
    assert torch.allclose(last.float(), attention_weights(checkpoint.model, probe["ids"]), atol=1e-3)
    assert not torch.allclose(first, last)

    detectors = read_jsonl(folder / "detectors.jsonl")
    assert [d["step"] for d in detectors] == [0, 2, 4, 6]
    letters = [ord(c) for c in "abcdefghijklmnopqrstuvwxyz"]
    expected = head_scores(checkpoint.model, probe["ids"], vocabulary=letters)
    assert set(detectors[-1]["scores"]) == set(DETECTORS)
    for name, scores in detectors[-1]["scores"].items():
        assert torch.allclose(torch.tensor(scores), expected[name], atol=1e-5)

    samples = read_jsonl(folder / "samples.jsonl")
    lines = samples[-1]["text"].splitlines()
    held_out = TaskData(TASKS["copy"], tokenizer, 24).held_out
    assert [s["step"] for s in samples] == [3, 6] and len(lines) == 5
    assert all(line.startswith(prompt) and ("✓" in line or f"✗ (right: {answer})" in line) for line, (prompt, answer) in zip(lines, held_out))


def test_a_text_run_snapshots_the_start_of_its_validation_text(tmp_path, shakespeare_text):
    corpus = tmp_path / "text.txt"
    corpus.write_text(shakespeare_text[:5000], encoding="utf-8")
    cfg = TrainConfig(
        out=str(tmp_path / "text-run"), data=str(corpus), tokenizer="bpe:300", n_layer=1, n_head=2, n_embd=16,
        block_size=64, batch_size=2, max_steps=2, eval_every=2, eval_batches=1, sample_every=0, snapshot_every=5,
        warmup_steps=0, seed=0, device="cpu",
    )
    trainer = Trainer(cfg)
    trainer.train()
    probe = json.loads((Path(cfg.out) / "probe.json").read_text())
    assert probe["ids"] == trainer.val_ids[:48].tolist()  # at most 48 tokens of the held-out text
    assert snapshot_steps(Path(cfg.out)) == [0, 2]  # at the start, and the last step (5 never comes)
    assert "task_accuracy" not in read_jsonl(Path(cfg.out) / "metrics.jsonl")[-1]


def test_resuming_drops_the_snapshots_logged_after_the_checkpoint(task_config):
    """A crash at step 5 after the checkpoint of step 3 (step 5's lines are written before the
    callback that crashes): snapshots 4 and 5 and those lines go, then come back."""
    cfg = task_config(snapshot_every=1, max_steps=6, eval_every=3)

    def crash(record):
        if record["step"] == 5:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        Trainer(cfg).train(crash)
    folder = Path(cfg.out)
    assert snapshot_steps(folder) == [0, 1, 2, 3, 4, 5]
    resumed = Trainer(resume_config(folder), resume=True)
    assert resumed.step == 3
    assert snapshot_steps(folder) == [0, 1, 2, 3]
    assert [d["step"] for d in read_jsonl(folder / "detectors.jsonl")] == [0, 1, 2, 3]
    assert resumed.train() == "finished"
    assert snapshot_steps(folder) == list(range(7))
    assert [d["step"] for d in read_jsonl(folder / "detectors.jsonl")] == list(range(7))


def test_the_command_line_starts_a_task_from_its_preset_and_flags_win(tmp_path, capsys):
    out = tmp_path / "cli-sort"
    assert main(["train", "--data", "task:sort", "--out", str(out), "--max-steps", "2", "--threads", "1"]) == 0
    config = json.loads((out / "config.json").read_text())["training"]["config"]
    preset = TASKS["sort"].preset
    assert {k: config[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "snapshot_every")} == {
        k: preset[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "snapshot_every")
    }
    assert config["max_steps"] == 2 and "task_accuracy" in read_jsonl(out / "metrics.jsonl")[-1]
    assert "sort examples made as it goes" in capsys.readouterr().out
    assert main(["train", "--data", "task:nope", "--out", str(tmp_path / "nope")]) == 1
    assert "unknown task 'nope'" in capsys.readouterr().err


# --- the copy task grows an induction head --------------------------------------------------

LESSON_SCORE = 0.7  # the induction score Lesson 4 says its run's head reaches


def lesson_head_score(folder: Path) -> tuple[int, int, float] | None:
    """The head Lesson 4 opens (the best past layer 0 at the last snapshot) and its induction score."""
    head = best_induction_head(folder)
    if head is None:
        return None
    return *head, read_jsonl(folder / "detectors.jsonl")[-1]["scores"]["induction"][head[0]][head[1]]


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory):
    """Lesson 4's run: the copy task's preset, as the lesson's first step starts it, stopped at the
    first snapshot where the head the lesson opens scores the lesson's 0.7 (or at its last step)."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("copy") / "run"
    cfg = TrainConfig(**(TASKS["copy"].preset | dict(out=str(folder), data="task:copy", sample_every=0, device="cpu")))
    trainer = Trainer(cfg)

    def stop_when_the_head_is_there(record):
        if record["step"] % cfg.snapshot_every == 0 and (lesson_head_score(folder) or (0, 0, 0.0))[2] >= LESSON_SCORE:
            trainer.stop_requested = True

    trainer.train(stop_when_the_head_is_there)
    return trainer


@pytest.mark.slow
def test_the_lessons_run_grows_an_induction_head_past_layer_0_it_relies_on(copy_run):
    folder = Path(copy_run.cfg.out)
    layer, head, score = lesson_head_score(folder)
    at_init = torch.tensor(read_jsonl(folder / "detectors.jsonl")[0]["scores"]["induction"])
    assert score >= LESSON_SCORE, (copy_run.step, score)  # within the preset's steps: the run would have gone on
    assert layer == 1 and at_init.max() < 0.2, at_init  # an induction head needs layer 0 to say what preceded each token

    x, y = copy_run.task_data.held_out_batch  # the loss on the answers, which only copying can predict
    mask = torch.ones(copy_run.model.config.n_layer, copy_run.model.config.n_head)
    with torch.no_grad():
        intact = copy_run.model(x, y).loss.item()
        mask[layer, head] = 0
        ablated = copy_run.model(x, y, probe=Probe(head_mask=mask)).loss.item()
    assert ablated > intact + 1.0, (intact, ablated)


@pytest.mark.slow
def test_lesson_6_reads_the_answer_at_the_induction_heads_block_and_patching_that_head_brings_it_back(copy_run):
    steps = shipped_lessons()["6-which-head-causes-the-answer.toml"].steps
    clean, corrupted = steps[-1].params["ins_text"], steps[-1].params["ins_corrupt"]
    model, tokenizer = copy_run.model.eval(), copy_run.task_data.tokenizer
    layer, head, _ = lesson_head_score(Path(copy_run.cfg.out))
    ids = tokenizer.encode(clean)
    lens = logit_lens(model, ids, tokenizer.vocab_size)
    assert tokenizer.decode([int(lens.final_ids[-1])]) == "b"  # qhzbwmkqhz → b, as the lesson says
    assert lens.rows[lens.settles_at()[-1]] == f"block {layer}"  # where the lesson's lens step says it appears
    found = activation_patching(model, ids, tokenizer.encode(corrupted), tokenizer.vocab_size)
    assert found.heads[layer, head] > 0.8 and found.heads[0].max() < 0.5, found.heads


@pytest.mark.slow
def test_accuracy_is_what_greedy_generation_gets_right(copy_run):
    data, model = copy_run.task_data, copy_run.model
    _, accuracy = data.evaluate(model)
    right = 0
    for prompt, answer in data.held_out:
        steps = generate(model, data.tokenizer, data.tokenizer.encode(prompt), Sampling(temperature=0, max_new_tokens=len(answer) + 1))
        right += [s.token_id for s in steps] == data.tokenizer.encode(answer) + [END]
    assert accuracy == right / len(data.held_out) >= 0.8


# --- the Train page -------------------------------------------------------------------------


def test_accuracy_chart_draws_the_evaluations_in_percent():
    metrics = [{"step": 10, "train_loss": 2.0}, {"step": 20, "train_loss": 1.0, "val_loss": 1.1, "task_accuracy": 0.25},
               {"step": 40, "train_loss": 0.5, "val_loss": 0.6, "task_accuracy": 0.75}]
    fig = accuracy_figure(metrics)
    assert list(fig.data[0].x) == [20, 40] and list(fig.data[0].y) == [0.25, 0.75]
    assert fig.layout.yaxis.tickformat == ".0%" and "accuracy" in fig.layout.title.text.lower()
    assert has_task_accuracy(metrics) and not has_task_accuracy(metrics[:1])


@pytest.mark.slow
def test_the_train_page_offers_the_tasks_with_their_presets(app_dirs):
    at = open_train()
    at.radio(key="train_what").set_value("A synthetic task").run()
    assert not at.exception, at.exception
    task_radio = at.radio(key="train_task")
    assert task_radio.options == list(TASKS) and task_radio.value == "copy"
    assert [c for c in task_radio.proto.captions] == [t.description for t in TASKS.values()]
    preset = TASKS["copy"].preset
    assert at.number_input(key="train_n_layer").value == preset["n_layer"]
    assert at.number_input(key="train_max_steps").value == preset["max_steps"]
    task_radio.set_value("brackets").run()
    assert at.number_input(key="train_block_size").value == TASKS["brackets"].preset["block_size"]
    assert not at.error and not at.button(key="train_start").disabled

    at.number_input(key="train_block_size").set_value(8).run()
    assert "needs a context of at least 16 tokens" in at.error[0].value and at.button(key="train_start").disabled
    at.number_input(key="train_block_size").set_value(16).run()
    at.number_input(key="train_max_steps").set_value(3).run()
    at.text_input(key="train_name").set_value("brackets-run").run()
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    config = json.loads((app_dirs / "runs" / "brackets-run" / TRAIN_CONFIG_FILE).read_text())
    assert (config["data"], config["max_steps"], config["snapshot_every"]) == ("task:brackets", 3, TASKS["brackets"].preset["snapshot_every"])
    info = wait_until_ended("brackets-run")
    assert info.state == "finished", info.error
    assert (info.folder / "attention" / "step_0000003.safetensors").is_file()


def test_a_task_run_shows_its_accuracy_beside_the_loss(app_dirs):
    folder = fake_run(app_dirs / "runs", "copy-run", state="finished")
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "train_loss": 3 - s / 10, "val_loss": 3 - s / 10, "task_accuracy": s / 10, "elapsed": s}) + "\n"
        for s in range(1, 6)
    ))
    (folder / "samples.jsonl").write_text(json.dumps({"step": 5, "text": "abc=abc   ✓"}) + "\n")
    at = open_train(run="copy-run")
    charts = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    accuracy = next(c for c in charts if "accuracy" in c["layout"]["title"]["text"].lower())
    assert accuracy["data"][0]["y"] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert any("held-out examples" in m.value for m in at.markdown)
    assert at.code[0].value == "abc=abc   ✓"


def test_probe_vocabulary_is_the_tasks_letters():
    tokenizer = task_tokenizer()
    assert probe_vocabulary({"config": {"data": "task:copy"}}, tokenizer, 16) == [tokenizer.encode(c)[0] for c in LETTERS]
    for training in ({"config": {"data": "tinyshakespeare"}}, {}, {"config": {"data": "task:no-such-task"}}):
        assert probe_vocabulary(training, tokenizer, 16) is None


def test_a_task_step_counts_only_the_tokens_of_its_padded_examples(task_config):
    """Task batches are as long as their longest example, not the context."""
    trainer = Trainer(task_config(batch_size=4))
    generator_state = trainer.batches.get_state()
    x, _ = trainer.task_data.batch(4, torch.Generator().set_state(generator_state))
    assert trainer._train_step()[3] == x.numel() < 4 * trainer.cfg.block_size


def test_prompt_length_splits_a_text_where_the_task_answer_begins():
    assert prompt_length(TASKS["copy"], "qhzbwqhzbw") == 6  # up to the first letter that comes again
    assert prompt_length(TASKS["copy"], "xqhzbwhzbw") == 7
    assert prompt_length(TASKS["sort"], "qhz=hqz") == 4
    assert prompt_length(TASKS["copy"], "qhzbwq") is None  # no answer yet
    assert prompt_length(TASKS["reverse"], "qhz") is None


def test_trained_task_reads_the_checkpoint_record():
    from lm.tasks import trained_task

    assert trained_task({"config": {"data": "task:copy"}}) is TASKS["copy"]
    assert trained_task({"config": {"data": "tinyshakespeare"}}) is None
    assert trained_task({"config": {"data": "task:unknown"}}) is None and trained_task({}) is None
