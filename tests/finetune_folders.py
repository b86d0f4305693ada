"""Fine-tune run folders written by hand in the format of notes/finetune_spec.md (what
`lm finetune` writes), so the Fine-tune page's views are tested without training."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from lm.checkpoint import save_checkpoint
from lm.finetune.classify import ClassifierHead
from lm.finetune.data import DATASETS
from tests.checkpoints import shakespeare_bpe, tiny_gpt
from tests.conftest import SHARED_DATA

GENERATIONS = [("reverse: a b c", "c b a", "a b c", "c b a"), ("uppercase: q z", "Q Z", "q z q", "Q Z"),
               ("first: k m", "k", "k m", "m")]


def copy_datasets() -> None:
    """The three fine-tuning sets "downloaded" already, into the data folder the test set up."""
    for dataset in DATASETS.values():
        dataset.file.folder().mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHARED_DATA / "finetune" / dataset.filename, dataset.file.path)


def metrics(method: str, steps=range(10, 110, 10)) -> list[dict]:
    records = []
    for step in steps:
        record = {"step": step, "train_loss": 2.0 - step / 100, "lr": 1e-3, "elapsed": step / 10}
        if step % 20 == 0:
            record["val_loss"] = 2.1 - step / 100
        if method == "classify":
            record["train_accuracy"] = 0.5 + step / 250
            if "val_loss" in record:
                record["val_accuracy"] = 0.5 + step / 240
        if method == "dpo":
            record |= {"reward_margin": step / 100, "chosen_logp": -30 + step / 20, "rejected_logp": -30 - step / 10,
                       "reward_accuracy": min(1.0, step / 80)}
        if method == "instruct" and "val_loss" in record:
            record["val_exact_match"] = step / 120
        records.append(record)
    return records


def evaluation(method: str, finished: bool = True) -> dict:
    if method == "classify":
        before = {"split": "test", "accuracy": 0.5, "labels": ["ham", "spam"], "confusion": [[60, 40], [60, 40]], "n": 200}
        after = {"split": "test", "accuracy": 0.94, "labels": ["ham", "spam"], "confusion": [[96, 4], [8, 92]], "n": 200}
    else:
        before = {"examples": [{"prompt": p, "expected": e, "response": b} for p, e, b, _ in GENERATIONS], "exact_match": 0.0}
        after = {"examples": [{"prompt": p, "expected": e, "response": a} for p, e, _, a in GENERATIONS],
                 "exact_match": 2 / 3}
    return {"method": method, "before": before} | ({"after": after} if finished else {})


def fake_finetune_run(root: Path, name: str, method: str, state: str = "finished", source: str = "demo",
                      checkpoint: bool = False) -> Path:
    """A fine-tune run as the page started it: finetune.json, launch.json, status.json, metrics,
    evaluation.json (its "after" part only once finished), and if asked a checkpoint (random
    weights; a classifier's with a ham/spam head). No process: a running one reads as died."""
    folder = root / name
    folder.mkdir(parents=True)
    request = {"method": method, "source": f"/models/{source}", "data": {"classify": "sms-spam", "dpo": "preferences"}.get(
        method, "synthetic"), "max_steps": 100, "lr": 1e-3, "batch_size": 8, "eval_interval": 20, "lora_rank": 0}
    (folder / "finetune.json").write_text(json.dumps(request))
    (folder / "launch.json").write_text(json.dumps({"pid": 2**22 + 1, "started": time.time()}))
    (folder / "status.json").write_text(json.dumps({"state": state, "pid": 2**22 + 1, "step": 100, "max_steps": 100}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics(method)))
    (folder / "evaluation.json").write_text(json.dumps(evaluation(method, state == "finished")))
    if checkpoint:
        model = tiny_gpt(shakespeare_bpe().vocab_size)
        if method == "classify":
            model.classifier = ClassifierHead(model.config.n_embd, ["ham", "spam"])
        save_checkpoint(folder, model, shakespeare_bpe(), {"step": 100})
    return folder
