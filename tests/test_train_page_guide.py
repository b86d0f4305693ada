"""The Train page's training guide and its run export/import, headless (AppTest)."""

from __future__ import annotations

import json

from explorer.run_archive import export_run
from tests.checkpoints import make_checkpoint
from tests.test_train_page import fake_run, open_train


def guide(at) -> list[str]:
    return [w.value for w in at.warning if w.icon == "🧭"]


def test_the_guide_flags_a_flat_loss_and_stays_quiet_on_a_healthy_run(app_dirs):
    flat = fake_run(app_dirs / "runs", "flat", state="finished")
    records = [{"step": s, "train_loss": 6.2 + 0.01 * (s % 2), "elapsed": s} for s in range(10, 210, 10)]
    (flat / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (flat / "launch.json").unlink()
    (flat / "train_config.json").write_text(json.dumps({"lr": 1e-6, "warmup_steps": 5, "max_steps": 200}))
    at = open_train(run="flat")
    [message] = guide(at)
    assert "The loss is flat" in message and "3e-4" in message and "1e-06" in message

    fine = fake_run(app_dirs / "runs", "fine", state="finished")
    records = [{"step": s, "train_loss": 6.2 - s / 50, "elapsed": s} for s in range(10, 210, 10)]  # falling
    (fine / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert guide(open_train(run="fine")) == []


def test_an_exported_run_imports_from_the_page(app_dirs):
    original = fake_run(app_dirs / "runs", "mine", state="finished")
    make_checkpoint(original)
    archive = export_run(original)
    at = open_train()
    at.file_uploader(key="train_import_file").set_value(("classmate.zip", archive, "application/zip")).run()
    assert at.text_input(key="train_import_name").value == "classmate-1"
    at.button(key="train_import").click().run()
    assert not at.exception, at.exception
    assert "Imported as **classmate-1**" in at.success[0].value
    assert sorted(at.dataframe[0].value["run"]) == ["classmate-1", "mine"]
    assert (app_dirs / "runs" / "classmate-1" / "metrics.jsonl").read_bytes() == (original / "metrics.jsonl").read_bytes()


def test_a_broken_archive_gets_a_message(app_dirs):
    fake_run(app_dirs / "runs", "mine", state="finished")
    at = open_train()
    at.file_uploader(key="train_import_file").set_value(("broken.zip", b"not a zip", "application/zip")).run()
    at.button(key="train_import").click().run()
    assert "not a zip archive" in at.error[0].value
    assert sorted(at.dataframe[0].value["run"]) == ["mine"]
