"""Fine-tuning runs end to end on tiny checkpoints: the run folder each method writes, the
classifier checkpoint, LoRA saving, freezing, resume after a stop, and bad input refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from lm.__main__ import main
from lm.checkpoint import load_checkpoint, read_config
from lm.finetune.classify import class_logits, encode_texts, load_classifier, predict
from lm.finetune.config import FinetuneConfig
from lm.finetune.loop import FinetuneRun
from lm.finetune.lora import lora_parameters
from lm.finetune.prompts import format_prompt
from lm.finetune.synthetic import operation
from lm.generate import Sampling, generate
from lm.run_folder import read_metrics, read_status
from tests.checkpoints import make_checkpoint

SPAM = ["WIN a FREE prize now, call 0800", "URGENT! claim your cash reward, txt WIN", "Free entry: text CLAIM to 8007"]
HAM = ["see you at lunch tomorrow", "ok I'll call you later", "are we still on for the movie?"]


@pytest.fixture
def source(tmp_path):
    return make_checkpoint(tmp_path / "source", block_size=48)


@pytest.fixture
def spam_csv(tmp_path):
    rows = [(text, "spam") for text in SPAM * 4] + [(text, "ham") for text in HAM * 4]
    path = tmp_path / "spam.csv"
    path.write_text("text,label\n" + "".join(f'"{t}",{l}\n' for t, l in rows), encoding="utf-8")
    return path


def finetune(*args) -> int:
    return main(["finetune", *map(str, args)])


def test_classify_writes_a_run_folder_and_a_classifier(tmp_path, source, spam_csv):
    out = tmp_path / "run"
    assert finetune("classify", "--from", source, "--out", out, "--data", spam_csv, "--max-steps", 6,
                    "--eval-interval", 3, "--log-every", 2, "--batch-size", 4) == 0
    assert read_status(out)["state"] == "finished"
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics] == [2, 3, 4, 6]
    assert all("train_accuracy" in m for m in metrics) and "val_accuracy" in metrics[-1] and "val_loss" in metrics[-1]
    evaluation = json.loads((out / "evaluation.json").read_text())
    for when in ("before", "after"):
        report = evaluation[when]
        assert report["labels"] == ["ham", "spam"] and report["split"] == "test"
        assert sum(map(sum, report["confusion"])) == report["n"]
        assert report["accuracy"] == pytest.approx((report["confusion"][0][0] + report["confusion"][1][1]) / report["n"])
    _, training = read_config(out)
    assert training["finetune"]["method"] == "classify" and training["finetune"]["lora"] is None
    assert training["finetune"]["trainable_parameters"] == training["finetune"]["total_parameters"]
    assert json.loads((out / "config.json").read_text())["classifier"] == {"labels": ["ham", "spam"]}
    gpt = load_checkpoint(out).model  # the Attention and Generate pages open it as a GPT
    model, tokenizer = load_classifier(out)
    assert torch.equal(gpt.transformer.wte.weight, model.transformer.wte.weight)
    ranked = predict(model, tokenizer, SPAM[0])
    x, lengths = encode_texts(tokenizer, [SPAM[0]], 48)
    probs = class_logits(model, x, lengths).softmax(-1)[0]
    assert dict(ranked) == pytest.approx({"ham": probs[0].item(), "spam": probs[1].item()})
    assert ranked[0][1] >= ranked[1][1]


def test_the_last_token_is_read_whatever_the_padding(source):
    model, tokenizer = load_checkpoint(source).model, load_checkpoint(source).tokenizer
    model.classifier = torch.nn.Linear(32, 2)
    x, lengths = encode_texts(tokenizer, ["a short one", "a much longer message than the first one"], 48)
    alone, alone_length = encode_texts(tokenizer, ["a short one"], 48)
    torch.testing.assert_close(class_logits(model, x, lengths)[0], class_logits(model, alone, alone_length)[0])


def test_bad_input_exits_2_and_writes_nothing(tmp_path, source, spam_csv, capsys):
    out = tmp_path / "run"
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,spam\nbye,\n", encoding="utf-8")
    cases = [
        (["--from", tmp_path / "nowhere", "--data", spam_csv], "no folder"),
        (["--from", source, "--data", bad], "row 3: no label"),
        (["--from", source, "--data", spam_csv, "--lora-rank", 2, "--trainable-blocks", 1], "not both"),
        (["--from", source, "--data", spam_csv, "--trainable-blocks", 5], "has 2 blocks"),
    ]
    for flags, message in cases:
        with pytest.raises(SystemExit) as exit_:
            finetune("classify", "--out", out, *flags)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
        assert not out.exists()


def test_trainable_blocks_freeze_the_rest(tmp_path, source, spam_csv):
    run = FinetuneRun(FinetuneConfig(method="classify", source=str(source), out=str(tmp_path / "run"), data=str(spam_csv),
                                     max_steps=3, batch_size=4, trainable_blocks=1))
    run.train()
    before, after = load_checkpoint(source).model.state_dict(), run.model.state_dict()
    for name, tensor in before.items():
        changed = not torch.equal(tensor, after[name])
        trains = name.startswith(("transformer.h.1.", "transformer.ln_f."))
        assert changed == trains, name


def test_lora_saves_a_merged_checkpoint_and_its_adapter(tmp_path, source, spam_csv):
    out = tmp_path / "run"
    run = FinetuneRun(FinetuneConfig(method="classify", source=str(source), out=str(out), data=str(spam_csv),
                                     max_steps=4, batch_size=4, lr=1e-2, lora_rank=2, lora_save="adapter"))
    run.train()
    head = sum(p.numel() for p in run.model.classifier.parameters())
    assert run.trainable == sum(p.numel() for p in lora_parameters(run.model)) + head
    lora = read_config(out)[1]["finetune"]["lora"]
    assert lora == {"rank": 2, "alpha": 4.0, "targets": ["attn", "mlp"], "save": "adapter"}
    adapter = load_file(str(out / "adapter.safetensors"))
    assert set(adapter) == {k for k, _ in run.model.named_parameters() if "lora_" in k}
    merged, tokenizer = load_classifier(out)
    x, lengths = encode_texts(tokenizer, SPAM + HAM, 48)
    run.model.eval()
    torch.testing.assert_close(class_logits(merged, x, lengths), class_logits(run.model, x, lengths), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("lora_rank", [0, 2])
def test_a_stopped_run_resumes_on_the_same_curve(tmp_path, source, spam_csv, lora_rank):
    def config(out, **extra):
        return FinetuneConfig(method="classify", source=str(source), out=str(out), data=str(spam_csv), max_steps=6,
                              batch_size=4, log_every=1, eval_interval=3, lora_rank=lora_rank, **extra)

    straight = FinetuneRun(config(tmp_path / "straight"))
    straight.train()
    stopped = FinetuneRun(config(tmp_path / "stopped"))

    def stop_at_4(record):
        if record["step"] == 4:
            stopped.stop_requested = True

    assert stopped.train(stop_at_4) == "stopped"
    assert read_status(tmp_path / "stopped")["state"] == "stopped"
    resumed = FinetuneRun(config(tmp_path / "stopped"), resume=True)
    assert resumed.step == 4 and resumed.train() == "finished"
    losses = [m["train_loss"] for m in read_metrics(tmp_path / "stopped")]
    assert losses == pytest.approx([m["train_loss"] for m in read_metrics(tmp_path / "straight")], rel=1e-5)
    for name, tensor in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, atol=1e-6, rtol=1e-5)


def test_instruct_on_the_synthetic_set(tmp_path, source):
    out = tmp_path / "run"
    assert finetune("instruct", "--from", source, "--out", out, "--data", "synthetic", "--max-steps", 2,
                    "--eval-interval", 2, "--batch-size", 4) == 0
    assert read_metrics(out)[-1]["val_exact_match"] == 0.0
    after = json.loads((out / "evaluation.json").read_text())["after"]
    assert after["exact_match"] == 0.0 and set(after["by_operation"]) == {"reverse", "uppercase", "repeat", "first", "last"}
    shown = after["examples"][0]
    assert shown["prompt"].endswith("### Response:\n") and shown["expected"] and isinstance(shown["response"], str)
    assert (out / "samples.jsonl").is_file()


def test_synthetic_batches_mix_the_operations(tmp_path, source):
    """Length-sorted batches of the synthetic set would each hold one operation (its lengths differ
    only by operation); its batches are shuffled, so each mixes them, and each epoch covers the set once."""
    run = FinetuneRun(FinetuneConfig(method="instruct", source=str(source), out=str(tmp_path / "run"), data="synthetic",
                                     batch_size=16))
    train = run.method.splits["train"]
    epoch = [run.method._rows(step) for step in range(-(-len(train) // 16))]
    assert sorted(i for rows in epoch for i in rows) == list(range(len(train)))
    assert all(len({operation(train[i]) for i in rows}) > 1 for rows in epoch[:-1])


def test_generation_after_training_reads_the_trained_head(tmp_path, source):
    """Greedy responses come from the weights as trained: generate's cached output head must
    follow the fused optimizer's in-place updates (it once kept the head from before training)."""
    cfg = FinetuneConfig(method="instruct", source=str(source), out=str(tmp_path / "run"), data="synthetic", max_steps=3,
                         eval_interval=3, batch_size=4, lr=0.05, warmup_steps=0)
    run = FinetuneRun(cfg)
    ids = run.tokenizer.encode(format_prompt(run.method.splits["test"][0]))[-40:]  # within the tiny context
    next(generate(run.model, run.tokenizer, ids, Sampling(temperature=0, max_new_tokens=1)))  # caches the head
    run.train()
    probs = torch.softmax(run.model.eval()(torch.tensor([ids])).logits[0, -1].detach(), -1)
    step = next(generate(run.model, run.tokenizer, ids, Sampling(temperature=0, max_new_tokens=1)))
    assert step.token_id == int(probs.argmax()) and step.raw_prob == pytest.approx(float(probs.max()), rel=1e-4)


def test_continue_pretraining_lowers_the_loss_of_its_text(tmp_path, source):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    out = tmp_path / "run"
    assert finetune("continue", "--from", source, "--out", out, "--data", text, "--max-steps", 30,
                    "--eval-interval", 30, "--lr", 3e-3, "--batch-size", 4, "--warmup-steps", 0) == 0
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["after"]["val_loss"] < evaluation["before"]["val_loss"] - 1
    assert load_checkpoint(out).training["finetune"]["method"] == "continue"


def test_resume_refuses_another_method(tmp_path, source, spam_csv, capsys):
    out = tmp_path / "run"
    finetune("classify", "--from", source, "--out", out, "--data", spam_csv, "--max-steps", 1, "--batch-size", 2)
    with pytest.raises(SystemExit):
        finetune("dpo", "--resume", "--out", out)
    assert "is a classify run, not dpo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        finetune("classify", "--from", source, "--out", out, "--data", spam_csv)
    assert "already holds a run" in capsys.readouterr().err
