"""The Fine-tune page's pure builders: charts from metrics and evaluations, the response-mask
chips, the before/after rows, the estimates' arithmetic, and the CLI line a request becomes."""

from __future__ import annotations

import math

import pytest

from explorer.finetune_charts import accuracy_figure, confusion_figure, logp_figure, probability_figure, reward_margin_figure
from explorer.finetune_compare import answers, measures_text, short_prompt
from explorer.finetune_estimate import memory_bytes, run_time, trainable_parameters, trains_everything, typical_length
from explorer.finetune_runs import FinetuneRequest
from explorer.finetune_template import mask_counts, mask_html
from explorer.finetune_watch import live_figures
from explorer.paths import FileStamp
from explorer.token_view import describe_tokens
from lm.finetune.data import Example, format_prompt, response_mask
from lm.finetune.lora import apply_lora, count_trainable
from lm.estimate import StepCosts
from lm.finetune.loop import choose_trainable
from lm.finetune.timing import step_ratio
from lm.model import GPT, GPTConfig
from lm.sizing import activation_bytes, parameter_count
from tests.checkpoints import shakespeare_bpe

METRICS = [
    {"step": 10, "train_loss": 0.7, "train_accuracy": 0.55},
    {"step": 20, "train_loss": 0.5, "train_accuracy": 0.7, "val_loss": 0.52, "val_accuracy": 0.75},
    {"step": 30, "train_loss": float("nan"), "train_accuracy": 0.8},
    {"step": 40, "train_loss": 0.3, "train_accuracy": 0.9, "val_loss": 0.31, "val_accuracy": 0.92},
]
DPO = [{"step": s, "loss": 0.69 - s / 100, "reward_margin": s / 50, "chosen_logp": -40 + s / 10,
        "rejected_logp": -40 - s / 5} for s in (5, 10, 15)]
CONFIG = GPTConfig(vocab_size=320, block_size=32, n_layer=3, n_head=2, n_embd=32)


def test_accuracy_curves_keep_each_split_and_mark_guessing():
    fig = accuracy_figure(METRICS, labels=4)
    train, val = fig.data
    assert list(train.x) == [10, 20, 30, 40] and list(train.y) == [0.55, 0.7, 0.8, 0.9]
    assert list(val.x) == [20, 40] and list(val.y) == [0.75, 0.92]  # only the evaluation steps
    assert fig.layout.shapes[0].y0 == 0.25  # one class in four
    assert fig.layout.yaxis.tickformat == ".0%"


def test_dpo_curves_show_the_margin_and_both_answers():
    margin = reward_margin_figure(DPO)
    assert list(margin.data[0].y) == [0.1, 0.2, 0.3] and margin.layout.shapes[0].y0 == 0
    chosen, rejected = logp_figure(DPO).data
    assert list(chosen.y) == [-39.5, -39.0, -38.5] and list(rejected.y) == [-41.0, -42.0, -43.0]
    assert chosen.name.startswith("chosen") and rejected.name.startswith("rejected")


def test_a_mixture_of_experts_run_shows_its_balance_beside_the_methods_curves():
    dense = live_figures(FileStamp("dense", 0, 1), "classify", None, 2, METRICS)
    moe = live_figures(FileStamp("moe", 0, 2), "classify", None, 2, [dict(r, balance_loss=1.2) for r in METRICS])
    assert "balance" not in dense and list(moe) == ["accuracy", "loss", "balance"]
    assert list(moe["balance"].data[0].y) == [1.2] * 4


def test_a_curve_without_values_draws_no_trace():
    assert logp_figure([{"step": 1, "loss": 1.0}]).data == ()


def test_confusion_matrix_rows_are_true_classes_with_counts_and_row_shares():
    fig = confusion_figure(["ham", "spam"], [[90, 10], [5, 95]], "After")
    heat = fig.data[0]
    assert list(heat.y) == ["ham", "spam"] and list(heat.x) == ["ham", "spam"]
    assert [list(r) for r in heat.z] == [[0.9, 0.1], [0.05, 0.95]]
    assert heat.text[1][0] == "5<br>5%"  # 5 spam messages taken for ham
    assert fig.layout.yaxis.autorange == "reversed"  # the first class on top, as a table reads


def test_a_class_never_seen_in_the_test_split_does_not_divide_by_zero():
    heat = confusion_figure(["a", "b"], [[3, 1], [0, 0]], "x").data[0]
    assert [list(r) for r in heat.z] == [[0.75, 0.25], [0.0, 0.0]]


def test_probabilities_put_the_likeliest_class_on_top():
    bar = probability_figure([("spam", 0.8), ("ham", 0.2)]).data[0]
    assert list(bar.y) == ["ham", "spam"] and list(bar.x) == [0.2, 0.8]  # plotly draws the last bar on top
    assert list(bar.text) == ["20.0%", "80.0%"]


def test_mask_chips_mark_exactly_the_tokens_the_loss_counts():
    tokenizer = shakespeare_bpe()
    example = Example("Say hello.", "", "Hello there.")
    ids, mask = response_mask(tokenizer, example)
    html = mask_html(describe_tokens(tokenizer, ids), mask)
    assert html.count("#b2f2bb") == sum(mask) == len(tokenizer.encode("Hello there.")) + 1  # the answer and <|endoftext|>
    assert html.count("#e9ecef") == len(ids) - sum(mask)
    assert html.count('class="tok"') == len(ids)
    assert mask_counts(mask) == (sum(mask), len(ids))


def test_long_examples_keep_their_end_the_response():
    tokenizer = shakespeare_bpe()
    ids, mask = response_mask(tokenizer, Example("word " * 300, "", "yes"))
    html = mask_html(describe_tokens(tokenizer, ids), mask, limit=50)
    assert html.count('class="tok"') == 50 and html.count("#b2f2bb") == sum(mask)
    assert f"the first {len(ids) - 50:,} tokens left out" in html


def test_answers_line_up_before_and_after_by_prompt():
    evaluation = {
        "before": {"examples": [{"prompt": "a", "expected": "A", "response": "x"}, {"prompt": "b", "expected": "B", "response": "y"}]},
        "after": {"examples": [{"prompt": "b", "expected": "B", "response": "B"}, {"prompt": "a", "expected": "A", "response": "A"}]},
    }
    assert answers(evaluation) == [{"prompt": "a", "expected": "A", "before": "x", "after": "A"},
                                   {"prompt": "b", "expected": "B", "before": "y", "after": "B"}]
    assert answers({"before": evaluation["before"]})[0]["after"] is None  # still training


def request(**options) -> FinetuneRequest:
    return FinetuneRequest(**{"method": "instruct", "source": "/m", "data": "synthetic", "max_steps": 10, "lr": 1e-3,
                              "batch_size": 4, "eval_interval": 5} | options)


def test_full_fine_tuning_trains_every_parameter():
    assert trainable_parameters(CONFIG, request()) == (parameter_count(CONFIG), parameter_count(CONFIG))


def test_lora_counts_match_the_adapters_lm_builds():
    model = apply_lora(GPT(CONFIG), 4, 8.0, ("attn", "mlp"))
    expected = count_trainable(model)
    assert trainable_parameters(CONFIG, request(lora_rank=4, lora_alpha=8.0, lora_targets=("attn", "mlp"))) == expected
    # by hand: per block, c_attn 32->96, attention's c_proj 32->32, c_fc 32->128, the MLP's c_proj 128->32
    assert expected[0] == 3 * 4 * ((32 + 96) + (32 + 32) + (32 + 128) + (128 + 32))


def test_a_classifier_with_frozen_blocks_trains_the_last_blocks_norm_and_head():
    trainable, total = trainable_parameters(CONFIG, request(method="classify", trainable_blocks=1), labels=3)
    model = GPT(CONFIG)
    block = sum(p.numel() for p in model.transformer.h[-1].parameters())
    norm = sum(p.numel() for p in model.transformer.ln_f.parameters())
    head = 32 * 3 + 3
    assert (trainable, total) == (block + norm + head, parameter_count(CONFIG) + head)


def test_memory_counts_adam_only_for_what_trains_and_dpo_twice():
    counts = (1_000, 100_000)
    plain_run = memory_bytes(CONFIG, counts, batch=4, length=16, dpo=False)
    assert plain_run == 4 * 100_000 + 12 * 1_000 + activation_bytes(GPTConfig(320, 16, 3, 2, 32), 4)
    dpo = memory_bytes(CONFIG, counts, batch=4, length=16, dpo=True)
    assert dpo == 8 * 100_000 + 12 * 1_000 + activation_bytes(GPTConfig(320, 16, 3, 2, 32), 8)


COSTS = StepCosts(train_step=0.5, evaluation=2.0, sample=0.0, snapshot=0.0, checkpoint=1.0, log=0.0, timed_batch=4)


def test_the_time_scales_the_full_step_by_what_trains_and_adds_dpo_reference_passes():
    plain_run = run_time(request(max_steps=10, eval_interval=5), COSTS, startup=3.0)
    assert plain_run.step_seconds == 0.5 and plain_run.run_seconds == 3.0 + 10 * 0.5 + 2 * (2.0 + 1.0)
    lora = run_time(request(max_steps=10, eval_interval=5, lora_rank=4), COSTS, startup=3.0, ratio=0.6)
    assert lora.step_seconds == pytest.approx(0.3) and lora.training == pytest.approx(10 * 0.3)
    dpo = run_time(request(method="dpo", max_steps=10, eval_interval=5, lora_rank=4), COSTS, startup=3.0, ratio=0.6)
    assert dpo.step_seconds == pytest.approx(0.5 * (0.6 + 1 / 3))  # the reference model's forward is never trained
    assert trains_everything(request()) and not trains_everything(request(lora_rank=4))
    assert not trains_everything(request(trainable_blocks=3))  # all three blocks, but the embeddings are frozen


def test_the_step_ratio_times_both_models_and_keeps_the_threads():
    import torch

    threads = torch.get_num_threads()
    prepared = []
    ratio = step_ratio(CONFIG, lambda model: prepared.append(choose_trainable(model, request(trainable_blocks=1))),
                       batch=2, length=8, threads=1)
    assert prepared and 0 < ratio < math.inf and torch.get_num_threads() == threads


@pytest.mark.parametrize("lengths, expected", [([], 32), ([5] * 9 + [100], 32), (list(range(1, 11)), 10), ([3, 4], 4)])
def test_typical_length_is_a_high_percentile_capped_by_the_context(lengths, expected):
    assert typical_length(lengths, 32) == expected


def test_a_request_becomes_the_cli_line_of_the_spec():
    line = request(method="dpo", lora_rank=8, lora_alpha=16.0, lora_targets=("attn", "mlp"), beta=0.1, threads=1,
                   trainable_blocks=2).arguments("/runs/r", "preferences")
    assert line[:8] == ["finetune", "dpo", "--from", "/m", "--out", "/runs/r", "--data", "preferences"]
    assert line[line.index("--lora-targets") + 1] == "attn,mlp" and line[line.index("--beta") + 1] == "0.1"
    assert "--trainable-blocks" not in line  # with LoRA, the adapters are what trains (lm refuses both)
    frozen = request(trainable_blocks=2).arguments("/o", "synthetic")
    assert frozen[frozen.index("--trainable-blocks") + 1] == "2"
    assert "--lora-rank" not in request().arguments("/o", "synthetic")
    assert not math.isnan(float(line[line.index("--lr") + 1]))


def test_a_prompt_in_the_template_is_shown_without_its_fixed_words():
    assert short_prompt(format_prompt(Example("reverse: a b", "", "b a"))) == "reverse: a b"
    assert short_prompt(format_prompt(Example("Translate", "chat", "cat"))) == "Translate\n\n### Input:\nchat"
    assert short_prompt("First Citizen:") == "First Citizen:"  # continued pretraining: a text's start


def test_measures_say_what_is_known_and_nothing_when_nothing_is():
    assert measures_text({"before": {"exact_match": 0.0}, "after": {"exact_match": 0.5}}, "exact_match", "Exact match") \
        == "Exact match: 0% before, 50% after"
    assert measures_text({"before": {"val_loss": 4.2}}, "val_loss", "Loss") == "Loss: 4.200 before, — after"
    assert measures_text({"before": {"exact_match": None}, "after": {}}, "exact_match", "Exact match") is None  # DPO
