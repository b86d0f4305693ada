"""The Fine-tune page headless (AppTest): the form's counts, template and refusals, and the
views of fine-tune runs written by hand in the spec's format (tests/finetune_folders.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer import runs
from explorer.finetune_estimate import trainable_parameters
from explorer.finetune_runs import FinetuneRequest
from lm.checkpoint import read_config
from lm.finetune.classify import load_classifier, predict
from lm.finetune.data import response_mask
from lm.finetune.synthetic import synthetic_examples
from lm.finetune.lora import apply_lora, count_trainable
from lm.model import GPT
from lm.run_folder import read_metrics
from lm.sizing import parameter_count
from tests.checkpoints import make_checkpoint, shakespeare_bpe
from tests.conftest import open_page
from tests.helpers import wait_for
from tests.finetune_folders import GENERATIONS, copy_datasets, evaluation, fake_finetune_run, metrics


@pytest.fixture
def base(app_dirs) -> Path:
    """A small model to start from, and the data sets on this machine."""
    copy_datasets()
    return make_checkpoint(app_dirs / "runs" / "base", n_layer=2)


def open_finetune(**query) -> AppTest:
    return open_page("app_pages/finetune.py", **query)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def spec(at: AppTest, index: int) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def test_the_form_counts_the_parameters_that_train_with_and_without_lora(base):
    at = open_finetune()
    assert at.radio(key="ft_method").value == "Classify" and at.selectbox(key="ft_from").value == "base"
    config, _ = read_config(base)
    head = config.n_embd * 2 + 2  # ham and spam
    assert metric(at, "Parameters that train") == f"{parameter_count(config) + head:,}"  # every weight, by default
    assert metric(at, "Time per step").startswith("≈ ")
    at.selectbox(key="ft_trainable_blocks").set_value(1).run()
    frozen = trainable_parameters(config, FinetuneRequest("classify", "", "", 1, 1e-3, 1, 1, trainable_blocks=1))
    assert metric(at, "Parameters that train") == f"{frozen[0]:,}" and frozen[0] < parameter_count(config) / 2

    at.radio(key="ft_method").set_value("Follow instructions").run()
    at.toggle(key="ft_lora").set_value(True).run()
    at.multiselect(key="ft_lora_targets").set_value(["attn", "mlp"]).run()
    expected = count_trainable(apply_lora(GPT(config), 8, 16.0, ("attn", "mlp")))[0]
    assert metric(at, "Parameters that train") == f"{expected:,}"
    assert not at.button(key="ft_start").disabled and not at.error


def test_each_method_starts_from_its_own_settings(base):
    at = open_finetune()
    at.radio(key="ft_method").set_value("Prefer answers (DPO)").run()
    assert at.number_input(key="ft_lr").value == 1e-4 and at.number_input(key="ft_beta").value == 0.1
    assert at.radio(key="ft_data").value == "Instructions with preferences"
    at.radio(key="ft_method").set_value("Follow instructions").run()
    assert at.number_input(key="ft_lr").value == 3e-3 and at.radio(key="ft_data").value == "Synthetic puzzles"
    assert at.number_input(key="ft_max_steps").value == 1500  # what the demo model needs to learn the puzzles


def test_each_data_set_starts_from_its_own_settings(base):
    at = open_finetune(ft_method="Follow instructions")
    assert at.number_input(key="ft_lr").value == 3e-3  # the synthetic puzzles: a new skill, learned fast
    at.radio(key="ft_data").set_value("Alpaca-style instructions").run()
    assert (at.number_input(key="ft_lr").value, at.number_input(key="ft_max_steps").value) == (3e-4, 300)
    assert at.number_input(key="ft_batch_size").value == 8
    at.radio(key="ft_data").set_value("Synthetic puzzles").run()
    assert (at.number_input(key="ft_lr").value, at.number_input(key="ft_max_steps").value) == (3e-3, 1500)


def test_switching_data_keeps_settings_whose_defaults_do_not_change(base):
    at = open_finetune(ft_method="Follow instructions")
    at.number_input(key="ft_eval_interval").set_value(7).run()
    at.radio(key="ft_data").set_value("Alpaca-style instructions").run()
    assert at.number_input(key="ft_lr").value == 3e-4 and at.number_input(key="ft_eval_interval").value == 7
    at.radio(key="ft_method").set_value("Classify").run()
    at.number_input(key="ft_max_steps").set_value(77).run()
    at.radio(key="ft_data").set_value("Upload a file").run()  # classify's defaults are the same for any data
    assert at.number_input(key="ft_max_steps").value == 77


def test_instruction_tuning_shows_which_tokens_the_loss_counts(base):
    at = open_finetune(ft_method="Follow instructions")  # a link names the label
    chips = next(h.proto.body for h in at.get("html") if 'class="tok"' in h.proto.body)
    ids, mask = response_mask(shakespeare_bpe(), synthetic_examples()[0], block_size=32)
    assert chips.count('class="tok"') == len(ids) and chips.count("#b2f2bb") == sum(mask) > 0
    assert any("### Response:" in c.value for c in at.code)


def test_a_malformed_upload_names_its_rows_and_starts_nothing(base, app_dirs):
    at = open_finetune()
    at.radio(key="ft_data").set_value("Upload a file").run()
    table = b"text,label\nhello there,ham\nWIN a prize,\n,spam\n"
    at.file_uploader(key="ft_upload_classify").set_value(("mine.csv", table, "text/csv")).run()
    message = at.error[0].value
    assert "row 3: no label" in message and "row 4: no text" in message
    assert at.button(key="ft_start").disabled
    assert sorted(p.name for p in (app_dirs / "runs").iterdir()) == ["base"]


def test_an_oversized_upload_is_refused_on_the_server(base, monkeypatch):
    monkeypatch.setattr("explorer.finetune_data.MAX_UPLOAD_BYTES", 1_000)
    at = open_finetune()
    at.radio(key="ft_data").set_value("Upload a file").run()
    at.file_uploader(key="ft_upload_classify").set_value(("big.csv", b"text,label\n" + b"x,ham\n" * 500, "text/csv")).run()
    assert "big.csv is 3,011 bytes; the limit is 1,000 bytes" in at.error[0].value
    assert at.button(key="ft_start").disabled


def test_a_non_utf8_upload_is_asked_for_again_in_utf8(base):
    at = open_finetune()
    at.radio(key="ft_data").set_value("Upload a file").run()
    at.file_uploader(key="ft_upload_classify").set_value(("latin.csv", "text,label\ncafé,ham\n".encode("latin-1"),
                                                                "text/csv")).run()
    assert "latin.csv is not UTF-8: save it as UTF-8" in at.error[0].value
    assert at.button(key="ft_start").disabled


def test_a_good_upload_is_counted(base):
    at = open_finetune()
    at.radio(key="ft_data").set_value("Upload a file").run()
    rows = "text,label\n" + "".join(f"message {i},{'spam' if i % 3 else 'ham'}\n" for i in range(30))
    at.file_uploader(key="ft_upload_classify").set_value(("mine.csv", rows.encode(), "text/csv")).run()
    assert not at.error and any(c.value.startswith("30 messages, 2 labels: ham 10 · spam 20") for c in at.caption)


def test_an_upload_is_parsed_once_not_on_every_rerun(base, monkeypatch):
    from explorer import finetune_data
    calls, parse = [], finetune_data.parse_upload
    monkeypatch.setattr(finetune_data, "parse_upload", lambda *args: calls.append(args) or parse(*args))
    at = open_finetune()
    at.radio(key="ft_data").set_value("Upload a file").run()
    rows = "text,label\n" + "".join(f"parsed once {i},{'spam' if i % 2 else 'ham'}\n" for i in range(12))
    at.file_uploader(key="ft_upload_classify").set_value(("once.csv", rows.encode(), "text/csv")).run()
    at.number_input(key="ft_max_steps").set_value(7).run()
    assert len(calls) == 1 and not at.error


def test_a_finished_classifier_shows_its_curves_and_confusion_before_and_after(base, app_dirs):
    fake_finetune_run(app_dirs / "runs", "spam", "classify")
    at = open_finetune(run="spam")
    assert at.subheader[0].value.startswith("Fine-tune spam :green-badge[")
    accuracy, loss = spec(at, 0), spec(at, 1)
    records = metrics("classify")
    assert accuracy["data"][1]["y"] == [r["val_accuracy"] for r in records if "val_accuracy" in r]
    assert loss["data"][0]["y"] == [r["train_loss"] for r in records]
    assert loss["layout"]["title"]["text"] == "Loss: how surprised the model is by the true class"
    before, after = spec(at, 2), spec(at, 3)
    assert before["data"][0]["text"][0] == ["60<br>60%", "40<br>40%"]
    assert after["data"][0]["text"][1] == ["8<br>8%", "92<br>92%"]
    assert before["layout"]["title"]["text"] == "Before: 50.0% of 200 right"
    assert after["layout"]["title"]["text"] == "After: 94.0% right (+44.0 points)"
    assert not at.expander[0].proto.expanded  # the form folds away while a run is watched
    assert "ft_method" not in [r.key for r in at.radio]  # and not drawn: a rerun would redraw it all


def test_a_folded_form_stays_drawn_while_it_holds_an_upload(base, app_dirs):
    """A file uploader that is not drawn loses its file: folded, the form is drawn only then."""
    fake_finetune_run(app_dirs / "runs", "spam", "classify")
    at = open_finetune()
    at.radio(key="ft_data").set_value("Upload a file").run()
    rows = "text,label\n" + "".join(f"kept {i},{'spam' if i % 2 else 'ham'}\n" for i in range(12))
    at.file_uploader(key="ft_upload_classify").set_value(("kept.csv", rows.encode(), "text/csv")).run()
    at.query_params["run"] = "spam"  # now a run is watched: the form folds
    at.run()
    assert not at.expander[0].proto.expanded
    assert any(c.value.startswith("12 messages, 2 labels") for c in at.caption)  # still drawn, file kept


def test_a_dpo_run_puts_the_reward_margin_first(base, app_dirs):
    fake_finetune_run(app_dirs / "runs", "polite", "dpo")
    at = open_finetune(run="polite")
    margin = spec(at, 0)
    assert margin["layout"]["title"]["text"].startswith("Reward margin")
    assert margin["data"][0]["y"] == [r["reward_margin"] for r in metrics("dpo")]
    logp = spec(at, 2)
    assert [t["name"] for t in logp["data"]] == ["chosen answer", "rejected answer"]


def test_instruction_tuning_answers_the_same_prompts_before_and_after(base, app_dirs):
    fake_finetune_run(app_dirs / "runs", "puzzles", "instruct")
    at = open_finetune(run="puzzles", ft_example="2")
    assert "Exact match: 0% before, 67% after" in [c.value for c in at.caption]
    prompt, expected, before, after = GENERATIONS[1]
    assert [c.value for c in at.code][-4:] == [prompt, before, after, expected]


def test_a_run_still_training_says_the_after_part_is_to_come(base, app_dirs):
    folder = fake_finetune_run(app_dirs / "runs", "half", "instruct", state="stopped")
    assert "after" not in json.loads((folder / "evaluation.json").read_text())
    at = open_finetune(run="half")
    assert "Exact match: 0% before, — after" in [c.value for c in at.caption]
    assert "once the run ends" in at.code[-2].value


def test_the_watched_fine_tune_shows_its_last_refresh_until_the_next(base, app_dirs, monkeypatch):
    """A rerun within the view's refresh interval sends the same curves (the browser redraws
    nothing); the next refresh reads the folder again, and a new state shows at once."""
    clock = [1000.0]
    monkeypatch.setattr("explorer.as_shown.time.monotonic", lambda: clock[0])
    folder = fake_finetune_run(app_dirs / "runs", "half", "instruct", state="stopped")

    def loss_points(at: AppTest) -> int:
        return len(spec(at, 1)["data"][0]["x"])  # after the exact match

    at = open_finetune(run="half")
    assert loss_points(at) == 10
    with open(folder / "metrics.jsonl", "a") as records:
        records.write(json.dumps({"step": 110, "train_loss": 0.9, "lr": 1e-3, "elapsed": 11}) + "\n")
    at.run()
    assert loss_points(at) == 10  # a rerun within the view's refresh interval
    clock[0] += 1.0
    at.run()
    assert loss_points(at) == 11
    status = json.loads((folder / "status.json").read_text())
    (folder / "status.json").write_text(json.dumps({**status, "state": "finished"}))
    (folder / "evaluation.json").write_text(json.dumps(evaluation("instruct")))
    at.run()
    assert "Exact match: 0% before, 67% after" in [c.value for c in at.caption]


def test_a_pretraining_run_is_sent_to_the_train_page(base, app_dirs):
    folder = app_dirs / "runs" / "pre"
    folder.mkdir()
    (folder / "status.json").write_text(json.dumps({"state": "finished", "step": 3, "max_steps": 3}))
    at = open_finetune(run="pre")
    assert "not a fine-tune run" in at.warning[0].value


def test_a_command_line_fine_tune_is_one_before_its_first_checkpoint(base, app_dirs):
    """`lm finetune` writes no finetune.json and its settings only with its first checkpoint; its
    evaluation of the starting model, written before the first step, names the method."""
    folder = fake_finetune_run(app_dirs / "runs", "early", "classify", state="stopped")
    (folder / "finetune.json").unlink()
    at = open_finetune(run="early")
    assert not at.warning and at.subheader[0].value.startswith("Fine-tune early")
    assert any(c.value.startswith("Classify ·") or c.value == "Classify" for c in at.caption)
    assert not any("?" in c.value for c in at.caption)
    (folder / "evaluation.json").unlink()  # nothing says it is a fine-tune: sent to the Train page
    assert "not a fine-tune run" in open_finetune(run="early").warning[0].value


def wait_until_ended(name: str, timeout: float = 300) -> runs.RunInfo:
    def ended() -> runs.RunInfo | None:
        info = runs.run_info(runs.run_folder(name))
        return None if info.active else info

    return wait_for(ended, timeout, 0.3)


@pytest.mark.slow
def test_start_a_classifier_then_compare_it_and_classify_a_message(base, app_dirs):
    at = open_finetune()
    at.radio(key="ft_data").set_value("Upload a file").run()
    rows = "text,label\n" + "".join(f"{'WIN cash prize now' if i % 2 else 'see you at lunch'} {i},"
                                     f"{'spam' if i % 2 else 'ham'}\n" for i in range(40))
    at.file_uploader(key="ft_upload_classify").set_value(("mine.csv", rows.encode(), "text/csv")).run()
    for key, value in {"ft_max_steps": 6, "ft_batch_size": 4, "ft_eval_interval": 3}.items():
        at.number_input(key=key).set_value(value).run()
    at.text_input(key="ft_name").set_value("spam-page").run()
    at.button(key="ft_start").click().run()
    assert not at.exception and at.query_params["run"] == "spam-page"
    folder = app_dirs / "runs" / "spam-page"
    assert (folder / "finetune-data.csv").read_bytes() == rows.encode()  # the upload trains from the run's own copy
    info = wait_until_ended("spam-page")
    assert info.state == "finished", info.error

    at = open_finetune(run="spam-page")
    records = read_metrics(folder)
    assert spec(at, 0)["data"][1]["y"] == [r["val_accuracy"] for r in records if "val_accuracy" in r]
    after = json.loads((folder / "evaluation.json").read_text())["after"]
    assert spec(at, 3)["layout"]["title"]["text"].startswith(f"After: {after['accuracy']:.1%} right")
    assert spec(at, 3)["data"][0]["z"] == [[c / max(1, sum(row)) for c in row] for row in after["confusion"]]
    every = parameter_count(read_config(base)[0]) + 32 * 2 + 2
    assert any(f"{every:,} of {every:,} parameters train (100.0%)" in c.value for c in at.caption)  # the trainer's count, from its config  # the trainer's own count, from its config
    at.text_area(key="ft_message").set_value("WIN cash prize now 99").run()
    bars = spec(at, 4)["data"][0]
    model, tokenizer = load_classifier(folder)
    assert dict(zip(bars["y"], bars["x"])) == pytest.approx(dict(predict(model, tokenizer, "WIN cash prize now 99")))

    runs.continue_run("spam-page", 9)  # the Continue button's call: lm finetune classify --resume, in the same folder
    info = wait_until_ended("spam-page")
    assert (info.state, info.step) == ("finished", 9), info.error
    steps = [r["step"] for r in read_metrics(folder)]
    assert steps == sorted(set(steps)) and steps[-1] == 9  # the curve goes on, no step twice
    assert "finetune" in json.loads((folder / "launch.json").read_text())["command"]


def test_continue_pretraining_on_a_pasted_text_launches_lm_finetune_on_the_runs_copy(base, app_dirs, monkeypatch):
    launched = []
    monkeypatch.setattr(runs, "launch", lambda folder, arguments, *rest: launched.append(arguments))
    at = open_finetune()
    at.radio(key="ft_method").set_value("Continue pretraining").run()
    at.radio(key="ft_source").set_value("Paste text").run()
    text = "To be, or not to be, that is the question. " * 40
    at.text_area(key="ft_paste").set_value(text).run()
    at.text_input(key="ft_name").set_value("more").run()
    at.button(key="ft_start").click().run()
    assert not at.exception and at.query_params["run"] == "more"
    folder = app_dirs / "runs" / "more"
    args = launched[0]
    assert args[:6] == ["finetune", "continue", "--from", str(base.resolve()), "--out", str(folder.resolve())]
    assert args[args.index("--data") + 1] == str((folder / "finetune-data.txt").resolve())
    assert (folder / "finetune-data.txt").read_text() == text
    assert json.loads((folder / "finetune.json").read_text())["method"] == "continue"
