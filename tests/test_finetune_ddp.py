"""Fine-tuning in two processes (`torchrun -m lm finetune`, gloo on the CPU) trains as one process
with the same whole batch: each takes its share of every step's rows and their gradients are
averaged, so the curve, the checkpoint and the evaluation match; process 0 alone writes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from lm.run_folder import read_metrics
from tests.checkpoints import make_checkpoint
from tests.conftest import REPO
from tests.test_finetune import HAM, SPAM

STEPS = 6


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ddp-source") / "source", block_size=48)


@pytest.fixture(scope="module")
def spam_csv(tmp_path_factory):
    rows = [(text, "spam") for text in SPAM * 4] + [(text, "ham") for text in HAM * 4]
    path = tmp_path_factory.mktemp("ddp-data") / "spam.csv"
    path.write_text("text,label\n" + "".join(f'"{t}",{l}\n' for t, l in rows), encoding="utf-8")
    return path


def finetune(processes: int, out, source, data, batch_size: int, *extra: str) -> None:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] if processes > 1 else []
    command = [sys.executable, *launcher, "-m", "lm", "finetune", "classify", "--from", str(source), "--out", str(out),
               "--data", str(data), "--max-steps", str(STEPS), "--eval-interval", "3", "--log-every", "1",
               "--batch-size", str(batch_size), "--threads", "1", "--device", "cpu", *extra]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("--lora-rank", "4")], ids=["full", "lora"])
def test_two_processes_train_as_one_with_the_whole_batch(tmp_path, source, spam_csv, extra):
    finetune(1, tmp_path / "one", source, spam_csv, 4, *extra)
    finetune(2, tmp_path / "two", source, spam_csv, 2, *extra)  # 2 rows in each of 2 processes
    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [m["step"] for m in two] == [m["step"] for m in one] == list(range(1, STEPS + 1))  # written once
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for key in {"train_loss", "grad_norm", "train_accuracy", "val_loss", "val_accuracy"} & a.keys():
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    weights = [load_file(str(tmp_path / run / "model.safetensors")) for run in ("one", "two")]
    assert weights[0].keys() == weights[1].keys()
    for name, tensor in weights[0].items():
        assert weights[1][name].allclose(tensor, atol=1e-5), name
    evaluations = [json.loads((tmp_path / run / "evaluation.json").read_text()) for run in ("one", "two")]
    assert evaluations[1]["after"]["confusion"] == evaluations[0]["after"]["confusion"]
