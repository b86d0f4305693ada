"""The Train page headless (AppTest): estimates, refusals, a real run, the runs table.

Interactions run the page on its own (AppTest drops button clicks on a page reached
through app.py); views of a finished run go through app.py, so that its links to the
pages that use a model resolve."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer import runs
from lm import run_folder
from explorer.training_view import format_bytes
from lm.model import GPTConfig
from lm.plan import PRESETS
from lm.sizing import parameter_count, training_memory_bytes
from lm.train_config import padded_vocab_size
from explorer.navigation import PAGES, PageInfo
from tests.checkpoints import make_checkpoint, shakespeare_bpe

REPO = Path(__file__).resolve().parents[1]
TINY_PAGE = {"train_n_layer": 1, "train_n_head": 2, "train_n_embd": 32, "train_block_size": 32}
TINY_TRAINING = {
    "train_max_steps": 30, "train_batch_size": 4, "train_warmup_steps": 5, "train_eval_every": 10,
    "train_sample_every": 10, "train_log_every": 2, "train_vocab": 320,
}


def open_train(**query) -> AppTest:
    at = AppTest.from_file(str(REPO / "app_pages" / "train.py"), default_timeout=120)
    at.query_params.update(query)
    at.run()
    assert not at.exception, at.exception
    return at


def open_through_app(**query) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("app_pages/train.py")
    at.query_params.update(query)
    at.run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def errors(at: AppTest) -> str:
    return "\n".join(e.value for e in at.error)


def set_inputs(at: AppTest, values: dict) -> AppTest:
    for key, value in values.items():
        at.number_input(key=key).set_value(value)
    at.run()
    assert not at.exception, at.exception
    return at




def run_folders(app_dirs: Path) -> list[str]:
    root = app_dirs / "runs"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_show_the_models_parameter_count_and_memory(app_dirs, preset):
    at = open_train()
    at.radio(key="train_preset").set_value(preset).run()
    options = PRESETS[preset].options
    model = GPTConfig(512, options["block_size"], options["n_layer"], options["n_head"], options["n_embd"])
    assert metric(at, "Parameters") == f"{parameter_count(model):,}"
    assert metric(at, "Memory to train") == format_bytes(training_memory_bytes(model, options["batch_size"]))
    assert metric(at, "Time per step").startswith("≈ ")
    assert at.number_input(key="train_max_steps").value == options["max_steps"]
    assert not at.button(key="train_start").disabled and not at.error
    at.number_input(key="train_n_layer").set_value(options["n_layer"] + 1).run()
    assert at.radio(key="train_preset").value == "custom"  # changing a size makes it the user's own
    assert at.number_input(key="train_n_embd").value == options["n_embd"]


def test_an_impossible_head_split_is_refused_before_starting(app_dirs):
    at = set_inputs(open_train(), {"train_n_embd": 100, "train_n_head": 3})
    assert "n_embd (100) must be divisible by n_head (3)" in errors(at)
    assert at.button(key="train_start").disabled  # AppTest, like a browser, cannot click it
    assert run_folders(app_dirs) == []


def test_a_model_too_big_for_memory_is_refused(app_dirs, monkeypatch):
    monkeypatch.setattr("lm.plan.physical_memory_bytes", lambda: 2**30)  # a 1 GiB machine, whatever this one has
    at = set_inputs(open_train(), {"train_n_layer": 12, "train_n_embd": 1024, "train_n_head": 16})
    assert "GiB to train" in errors(at)
    assert at.button(key="train_start").disabled
    assert run_folders(app_dirs) == []


def test_a_model_past_the_cost_limit_is_refused_before_it_is_built(app_dirs):
    at = set_inputs(open_train(), {"train_n_layer": 48, "train_n_embd": 8192, "train_n_head": 64})
    assert "at most 2 billion" in errors(at)
    assert at.button(key="train_start").disabled
    assert run_folders(app_dirs) == []


def test_a_pasted_text_shorter_than_the_context_is_refused(app_dirs):
    at = open_train()
    at.radio(key="train_source").set_value("Paste text").run()
    at.text_area(key="train_paste").set_value("A short text. " * 20).run()
    assert "not more than the context of 64" in errors(at)
    assert at.button(key="train_start").disabled


def test_bad_and_duplicate_run_names_are_refused(app_dirs):
    (app_dirs / "runs" / "taken").mkdir(parents=True)
    at = open_train()
    at.text_input(key="train_name").set_value("../escape").run()
    assert "not a usable run name" in errors(at) and at.button(key="train_start").disabled
    at.text_input(key="train_name").set_value("taken").run()
    assert "already exists" in errors(at) and at.button(key="train_start").disabled
    assert run_folders(app_dirs) == ["taken"]


def wait_until_ended(name: str, timeout: float = 180) -> runs.RunInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = runs.run_info(runs.run_folder(name))
        if not info.active:
            return info
        time.sleep(0.2)
    raise AssertionError(f"{name} still training after {timeout} s")


@pytest.mark.slow
def test_starting_a_tiny_run_trains_it_and_shows_its_curves(app_dirs):
    at = set_inputs(open_train(), TINY_PAGE)
    set_inputs(at, TINY_TRAINING)
    at.text_input(key="train_name").set_value("page-run").run()
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    assert at.query_params["run"] == "page-run"  # a refresh comes back to it
    assert at.subheader[0].value.startswith("Run page-run :blue-badge[⏳ starting]")
    config = json.loads((app_dirs / "runs" / "page-run" / run_folder.TRAIN_CONFIG_FILE).read_text())
    assert (config["data"], config["tokenizer"], config["n_embd"], config["max_steps"]) == ("tinyshakespeare", "bpe:320", 32, 30)

    info = wait_until_ended("page-run")
    assert info.state == "finished", info.error
    at = open_through_app(run="page-run")  # as after a refresh
    metrics = run_folder.read_metrics(info.folder)
    loss_chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert loss_chart["data"][0]["x"] == [m["step"] for m in metrics] == list(range(2, 31, 2))
    assert loss_chart["data"][1]["y"] == [m["val_loss"] for m in metrics if "val_loss" in m]
    assert at.code[0].value == run_folder.read_samples(info.folder)[-1]["text"]
    assert at.subheader[0].value == "Run page-run :green-badge[✅ finished]"
    table = at.dataframe[0].value
    assert table["run"].tolist() == ["page-run"] and table["status"].tolist() == ["✅ finished"]


def fake_run(root: Path, name: str, **status) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / run_folder.LAUNCH_FILE).write_text(json.dumps({"pid": 2**22 + 1, "started": time.time()}))
    (folder / run_folder.STATUS_FILE).write_text(json.dumps({"pid": 2**22 + 1, "heartbeat": time.time(), "step": 5, "max_steps": 10, **status}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "train_loss": 5 - s / 10, "elapsed": s}) + "\n" for s in range(1, 6)))
    return folder


def test_a_failed_or_dead_run_says_why(app_dirs):
    fake_run(app_dirs / "runs", "broke", state="failed", error="the loss became nan at step 5: try a lower learning rate")
    at = open_train(run="broke")
    assert "try a lower learning rate" in errors(at)
    fake_run(app_dirs / "runs", "ghost", state="running")  # no process has that pid
    at = open_train(run="ghost")
    assert "process is gone" in errors(at)


def test_watch_then_delete_with_confirmation(app_dirs):
    folder = fake_run(app_dirs / "runs", "old", state="finished", best_val_loss=4.6)
    fake_run(app_dirs / "runs", "other", state="stopped")
    at = open_train()
    assert sorted(at.dataframe[0].value["run"]) == ["old", "other"]
    assert sorted(at.multiselect(key="train_compare").value) == ["old", "other"]
    at.selectbox(key="train_pick").set_value("old").run()
    at.button(key="train_watch").click().run()
    assert at.query_params["run"] == "old" and at.subheader[0].value.startswith("Run old ")
    at.button(key="train_close").click().run()
    assert "run" not in at.query_params and not any(s.value.startswith("Run ") for s in at.subheader)

    at.button(key="train_delete").click().run()
    assert "Delete the run **old**" in at.warning[0].value and folder.is_dir()  # asks first
    at.button(key="train_delete_no").click().run()
    assert not at.warning and folder.is_dir()
    at.button(key="train_delete").click().run()
    at.button(key="train_delete_yes").click().run()
    assert not at.exception, at.exception
    assert not folder.exists() and "run" not in at.query_params
    assert at.dataframe[0].value["run"].tolist() == ["other"]


def test_an_unknown_run_in_the_address_is_a_message(app_dirs):
    at = open_train(run="no-such-run")
    assert "no run named 'no-such-run'" in at.warning[0].value
    at = open_train(run="../../etc")
    assert "not a usable run name" in at.warning[0].value


def test_a_finished_run_links_to_the_pages_that_use_it(app_dirs, monkeypatch):
    """Links only to pages this app has: here every one of them that exists, registered."""
    folder = fake_run(app_dirs / "runs", "done", state="finished")
    make_checkpoint(folder)
    linked = [p for p in ("app_pages/attention.py", "app_pages/generate.py") if (REPO / p).exists()]
    monkeypatch.setattr("explorer.navigation.PAGES", PAGES + [PageInfo(p, p, "🔗", "") for p in linked if p not in {q.path for q in PAGES}])
    at = open_through_app(run="done")
    links = at.get("page_link")
    assert [link.proto.page for link in links] == [Path(p).stem for p in linked]
    assert all(link.proto.query_string == "model=done" for link in links)  # those pages preselect the run


def test_the_tokenizer_choice_sets_the_vocabulary(app_dirs):
    at = open_train()
    at.radio(key="train_tok_source").set_value("A tokenizer saved on the Tokenizer page").run()
    assert "No saved tokenizer yet" in at.info[0].value and at.button(key="train_start").disabled

    (app_dirs / "tokenizers").mkdir()
    shakespeare_bpe(320).save(app_dirs / "tokenizers" / "mine.json")
    at.run()
    assert at.selectbox(key="train_saved_tok").value == "mine"
    tiny = PRESETS["tiny"].options
    sizes = (tiny["block_size"], tiny["n_layer"], tiny["n_head"], tiny["n_embd"])
    assert metric(at, "Parameters") == f"{parameter_count(GPTConfig(320, *sizes)):,}"

    at.radio(key="train_tok_source").set_value("GPT-2's (r50k_base)").run()
    assert metric(at, "Parameters") == f"{parameter_count(GPTConfig(50_304, *sizes)):,}"  # padded to a multiple of 64
    assert any(c.value.startswith("50,257 tokens") for c in at.caption)


@pytest.mark.slow
def test_a_pasted_text_is_saved_in_the_run_and_trained_on(app_dirs, shakespeare_text):
    at = open_train()
    at.radio(key="train_source").set_value("Paste text").run()
    pasted = shakespeare_text[:40_000]
    at.text_area(key="train_paste").set_value(pasted).run()
    set_inputs(at, {**TINY_PAGE, **TINY_TRAINING})
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    name = at.query_params["run"]
    assert name == "custom-pasted-1"  # the suggested name
    folder = app_dirs / "runs" / name
    try:
        assert (folder / run_folder.DATA_FILE).read_text(encoding="utf-8") == pasted
        assert json.loads((folder / run_folder.TRAIN_CONFIG_FILE).read_text())["data"] == str((folder / run_folder.DATA_FILE).resolve())
    finally:
        runs.delete_run(name)


def test_the_blind_guess_spreads_over_the_tokenizers_tokens_not_the_padding(app_dirs):
    folder = fake_run(app_dirs / "runs", "padded", state="finished")
    tokenizer = shakespeare_bpe()
    make_checkpoint(folder, tokenizer=tokenizer, vocab_size=padded_vocab_size(tokenizer.vocab_size) + 64)
    at = open_through_app(run="padded")  # a run with a checkpoint links to the other pages
    loss_chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert loss_chart["layout"]["shapes"][0]["y0"] == pytest.approx(math.log(tokenizer.vocab_size))


def test_the_form_is_closed_and_not_drawn_while_runs_exist_unless_a_link_sets_it_up(app_dirs):
    """A closed form costs nothing per rerun: its widgets are not drawn. A lesson's step or a shared
    link (train_* settings in the address) opens it; settings made before closing it are kept."""
    def drawn(at: AppTest) -> set[str]:
        return {widget.key for widget in [*at.button, *at.number_input]}

    assert "train_start" in drawn(open_train())  # no run yet: the form is open
    fake_run(app_dirs / "runs", "old", state="finished")
    at = open_train()
    assert not {"train_start", "train_max_steps"} & drawn(at)
    assert at.expander[0].label == "➕ Start a new run" and at.dataframe[0].value["run"].tolist() == ["old"]
    linked = open_train(train_max_steps=123)
    assert linked.number_input(key="train_max_steps").value == 123 and "train_start" in drawn(linked)

    at.session_state["train_new_run"] = True  # the student opens it
    at.run()
    at.number_input(key="train_max_steps").set_value(77).run()
    at.session_state["train_new_run"] = False
    at.run()
    assert not at.exception and "train_max_steps" not in drawn(at)
    at.session_state["train_new_run"] = True
    at.run()
    assert at.number_input(key="train_max_steps").value == 77


def test_whether_the_form_opens_is_decided_once_a_visit(app_dirs):
    """The address changes with the form's settings: a setting put back to its default leaves it,
    and the form must not close under the user's hands then."""
    fake_run(app_dirs / "runs", "old", state="finished")
    at = open_train(train_seed=7)  # a shared link sets the form up: it opens
    assert any(widget.key == "train_start" for widget in at.button)
    del at.query_params["train_seed"]  # as when the seed is put back to its default
    at.run()
    assert not at.exception and any(widget.key == "train_start" for widget in at.button)


def test_a_closed_form_keeps_an_uploaded_or_a_long_pasted_text(app_dirs):
    """Streamlit forgets an upload, and a paste too long for the address, whose widget is not drawn:
    while the form's text is one of those, the closed form is still drawn."""
    fake_run(app_dirs / "runs", "old", state="finished")
    text = "To be, or not to be: that is the question. " * 200  # far more than a link keeps
    at = open_train()
    at.session_state["train_new_run"] = True
    at.run()
    at.radio(key="train_source").set_value("Paste text").run()
    at.text_area(key="train_paste").set_value(text).run()
    for is_open in (False, True):
        at.session_state["train_new_run"] = is_open
        at.run()
    assert at.text_area(key="train_paste").value == text
    at.radio(key="train_source").set_value("Upload a file").run()
    at.file_uploader(key="train_upload").set_value(("mine.txt", text.encode(), "text/plain")).run()
    for is_open in (False, True):
        at.session_state["train_new_run"] = is_open
        at.run()
    assert not at.exception and at.file_uploader(key="train_upload").value.name == "mine.txt"


def test_the_table_shows_progress_as_of_its_last_refresh_and_a_new_state_at_once(app_dirs, monkeypatch):
    """A rerun within the table's refresh interval sends the same table (the browser redraws nothing);
    after it, or when a run's state changes, the table reads the runs again."""
    clock = [1000.0]
    monkeypatch.setattr("explorer.as_shown.time.monotonic", lambda: clock[0])
    folder = fake_run(app_dirs / "runs", "old", state="stopped", step=5)
    at = open_train()
    status = json.loads((folder / run_folder.STATUS_FILE).read_text())
    (folder / run_folder.STATUS_FILE).write_text(json.dumps({**status, "step": 7}))
    at.run()
    assert at.dataframe[0].value["step"].tolist() == ["5 / 10"]
    clock[0] += 3.0
    at.run()
    assert at.dataframe[0].value["step"].tolist() == ["7 / 10"]
    (folder / run_folder.STATUS_FILE).write_text(json.dumps({**status, "step": 8, "state": "finished"}))
    at.run()
    assert at.dataframe[0].value[["status", "step"]].values.tolist() == [["✅ finished", "8 / 10"]]


def test_the_watched_run_shows_its_last_refresh_until_the_next(app_dirs, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("explorer.as_shown.time.monotonic", lambda: clock[0])
    folder = fake_run(app_dirs / "runs", "old", state="stopped")

    def loss_points(at: AppTest) -> int:
        return len(json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["x"])

    at = open_train(run="old")
    assert loss_points(at) == 5
    with open(folder / "metrics.jsonl", "a") as metrics:
        metrics.write(json.dumps({"step": 6, "train_loss": 4.4, "elapsed": 6}) + "\n")
    at.run()
    assert loss_points(at) == 5  # a rerun within the view's refresh interval
    clock[0] += 1.0
    at.run()
    assert loss_points(at) == 6
