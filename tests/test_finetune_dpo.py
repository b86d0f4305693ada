"""DPO: the loss against a hand computation, log-probabilities summed over the response only,
and a run whose first step starts at ln 2 (the policy is its reference)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lm.__main__ import main
from lm.finetune.dpo import dpo_loss, sequence_logprobs
from lm.finetune.prompts import pad_batch
from lm.run_folder import read_metrics
from tests.checkpoints import make_checkpoint


def test_dpo_loss_by_hand():
    chosen, rejected = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -2.0])
    ref_chosen, ref_rejected = torch.tensor([-3.5, -4.0]), torch.tensor([-3.0, -2.5])
    beta = 0.5
    # row 1: 0.5 * ((-3 + 3.5) - (-4 + 3)) = 0.75; row 2: 0.5 * ((-5 + 4) - (-2 + 2.5)) = -0.75
    expected = (-math.log(1 / (1 + math.exp(-0.75))) - math.log(1 / (1 + math.exp(0.75)))) / 2
    loss, measures = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta)
    assert loss.item() == pytest.approx(expected)
    assert measures["reward_margin"] == pytest.approx(0.0)
    assert measures["reward_accuracy"] == 0.5
    assert measures["chosen_logp"] == pytest.approx(-4.0) and measures["rejected_logp"] == pytest.approx(-3.0)


def test_log_probabilities_count_response_tokens_only():
    # ids: prompt 1 2, response 3 4: the targets of positions 1 and 2 count, position 0's does not
    x, y = pad_batch([([1, 2, 3, 4], [0, 0, 1, 1])], pad_id=0)
    logits = torch.randn(1, 3, 6)
    log_probs = logits.log_softmax(-1)[0]
    assert sequence_logprobs(logits, y).item() == pytest.approx((log_probs[1, 3] + log_probs[2, 4]).item(), rel=1e-6)
    changed = logits.clone()
    changed[0, 0] = torch.randn(6) * 5  # the prediction of a prompt token
    assert sequence_logprobs(changed, y).item() == pytest.approx(sequence_logprobs(logits, y).item(), rel=1e-6)


def test_a_dpo_run_logs_its_preferences(tmp_path):
    source = make_checkpoint(tmp_path / "source", block_size=64)
    examples = [{"instruction": f"Answer {i}", "input": "", "output": "Yes, gladly.", "chosen": "Yes, gladly.",
                 "rejected": "No. Go away."} for i in range(12)]
    (tmp_path / "prefs.jsonl").write_text("\n".join(map(json.dumps, examples)), encoding="utf-8")
    out = tmp_path / "run"
    assert main(["finetune", "dpo", "--from", str(source), "--out", str(out), "--data", str(tmp_path / "prefs.jsonl"),
                 "--max-steps", "8", "--log-every", "1", "--eval-interval", "8", "--batch-size", "4", "--lr", "3e-3",
                 "--beta", "0.5"]) == 0
    metrics = read_metrics(out)
    assert metrics[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-5)  # step 1 scored the starting model
    assert metrics[0]["reward_margin"] == pytest.approx(0.0, abs=1e-5)
    assert metrics[-1]["reward_margin"] > 0.5 and metrics[-1]["chosen_logp"] > metrics[-1]["rejected_logp"]
    assert {"val_loss", "val_reward_margin", "val_reward_accuracy"} <= metrics[-1].keys()
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["after"]["reward_margin"] > evaluation["before"]["reward_margin"] == pytest.approx(0.0, abs=1e-5)
    assert evaluation["after"]["examples"][0]["expected"] == "Yes, gladly." and evaluation["after"]["exact_match"] is None
