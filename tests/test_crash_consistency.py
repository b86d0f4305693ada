"""A run folder survives a kill at any moment: fault injection over the checkpoint sequence.

A kill -9 leaves the files as they are at that instant, so the tests copy the run folder
at every point where the writer touches the disk (each rename and each fsync) while it
saves one checkpoint, and while a resume finishes and trims a folder: each copy is the
folder such a kill leaves. Resuming any of them must continue the uninterrupted curve
exactly (every logged line, sample and detector score, and the final weights). A real
SIGKILL of the command line at one point checks that the copies are what a kill leaves.
The second part: a set whose files do not match is refused, saying which file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lm.checkpoint import load_checkpoint, save_checkpoint
from lm.data import DataError
from lm.journal import MANIFEST_FILE, InconsistentSet, staged_path
from lm.run_folder import DETECTORS_FILE, METRICS_FILE, SAMPLES_FILE, STATE_FILE, Run
from lm.trainer import TrainConfig, Trainer, resume_config
from tests.checkpoints import shakespeare_bpe, text_and_bpe, tiny_gpt
from tests.helpers import read_jsonl

REPO = Path(__file__).resolve().parents[1]
STEPS, CRASH_STEP = 5, 3  # a checkpoint every step; the one of step 3 is cut short
SETTINGS = dict(
    n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=4, max_steps=STEPS, lr=3e-3, min_lr=3e-4,
    warmup_steps=2, log_every=1, eval_every=1, eval_batches=1, sample_every=2, sample_tokens=6, snapshot_every=2,
    dropout=0.1, device="cpu", threads=1, seed=0,
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shakespeare_text) -> dict:
    return text_and_bpe(tmp_path_factory.mktemp("inputs"), shakespeare_text[:12_000])


@pytest.fixture(scope="module")
def straight(inputs, tmp_path_factory) -> Path:
    """The uninterrupted run every resumed one must equal."""
    out = tmp_path_factory.mktemp("straight") / "run"
    Trainer(TrainConfig(**SETTINGS, **inputs, out=str(out))).train()
    return out


def curve(folder: Path) -> dict:
    """Everything a resumed run must reproduce: the logged numbers (times differ) and the weights."""
    metrics = [{k: v for k, v in m.items() if k not in ("tokens_per_s", "elapsed")} for m in read_jsonl(folder / METRICS_FILE)]
    return dict(
        metrics=metrics, samples=read_jsonl(folder / SAMPLES_FILE), detectors=read_jsonl(folder / DETECTORS_FILE),
        weights=load_checkpoint(folder).model.state_dict(),
    )


def assert_same_curve(resumed: Path, straight: Path) -> None:
    a, b = curve(resumed), curve(straight)
    assert a["metrics"] == b["metrics"]  # exactly, every step once
    assert a["samples"] == b["samples"] and a["detectors"] == b["detectors"]
    assert a["weights"].keys() == b["weights"].keys()
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])


class Captures:
    """Copies of a folder at every rename and fsync while `on`: what a kill there leaves."""

    def __init__(self, monkeypatch, folder: Path, into: Path):
        self.folder, self.into, self.on, self.copies = folder, into, False, []
        real_replace, real_fsync = os.replace, os.fsync

        def replace(src, dst, **kwargs):
            self.capture(f"before renaming {Path(src).name} to {Path(dst).name}")
            real_replace(src, dst, **kwargs)

        def fsync(fd):
            real_fsync(fd)
            self.capture(f"after an fsync of {os.readlink(f'/proc/self/fd/{fd}')}")

        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "fsync", fsync)

    def capture(self, point: str) -> None:
        if self.on:
            copy = self.into / f"kill-{len(self.copies):02d}"
            shutil.copytree(self.folder, copy, symlinks=True)
            self.copies.append((point, copy))


def resume_and_finish(folder: Path) -> int:
    """Resume the folder and train it to the end; returns the step it resumed from."""
    trainer = Trainer(resume_config(folder, max_steps=STEPS), resume=True)
    start = trainer.step
    trainer.train()
    return start


@pytest.fixture(scope="module")
def killed(inputs, tmp_path_factory) -> list[tuple[str, Path]]:
    """(point, folder) for every point of step 3's checkpoint where a kill can strike."""
    folder = tmp_path_factory.mktemp("killed")
    with pytest.MonkeyPatch.context() as monkeypatch:
        captures = Captures(monkeypatch, folder / "run", folder)
        real_save = Run.save

        def save(run, model, tokenizer, training, state):
            captures.on = state["step"] == CRASH_STEP
            captures.capture("after the step's lines, before its checkpoint")
            real_save(run, model, tokenizer, training, state)
            captures.capture("after the checkpoint")
            captures.on = False

        monkeypatch.setattr(Run, "save", save)
        Trainer(TrainConfig(**SETTINGS, **inputs, out=str(folder / "run"))).train()
    return captures.copies


def fresh_copy(folder: Path, into: Path) -> Path:
    return Path(shutil.copytree(folder, into / folder.name, symlinks=True))


def test_a_kill_at_any_point_of_a_checkpoint_resumes_on_the_same_curve(killed, straight, tmp_path):
    assert len(killed) >= 10, [p for p, _ in killed]
    resumed_from = []
    for point, original in killed:
        folder = fresh_copy(original, tmp_path)
        resumed_from.append(resume_and_finish(folder))
        assert not list(folder.glob(".*.staged.tmp")), point
        assert json.loads((folder / MANIFEST_FILE).read_text())["state"] == "complete", point
        assert_same_curve(folder, straight)
    # Before the commit point the old checkpoint stands; from it on, the new one is finished.
    assert resumed_from == sorted(resumed_from) and set(resumed_from) == {CRASH_STEP - 1, CRASH_STEP}


def test_a_line_cut_short_by_a_kill_is_dropped_and_logged_again(killed, straight, tmp_path):
    folder = fresh_copy(killed[-1][1], tmp_path)
    half_line = b'{"step": 4, "train_lo'  # a kill while the next step logs its line
    with open(folder / METRICS_FILE, "ab") as f:
        f.write(half_line)
    trainer = Trainer(resume_config(folder, max_steps=STEPS), resume=True)
    assert trainer.step == CRASH_STEP
    assert [m["step"] for m in read_jsonl(folder / METRICS_FILE)] == list(range(1, CRASH_STEP + 1))  # strict: no half line
    trainer.train()
    assert_same_curve(folder, straight)


def test_a_kill_while_resume_repairs_the_folder_resumes_on_the_same_curve(killed, straight, tmp_path, monkeypatch):
    """A folder killed between the renames of step 3's checkpoint (state.pt new, the weights
    old), with lines logged after it: resuming rolls the checkpoint forward and trims the logs;
    a kill at any point of that leaves a folder that still resumes exactly."""
    mixed = next(f for p, f in killed if p.startswith("before renaming .model.safetensors"))
    out = fresh_copy(mixed, tmp_path / "mixed")
    assert json.loads((out / MANIFEST_FILE).read_text())["state"] == "pending"
    with open(out / METRICS_FILE, "a") as f:
        f.write(json.dumps({"step": CRASH_STEP + 1, "train_loss": 9.0}) + "\n")

    captures = Captures(monkeypatch, out, tmp_path)
    captures.on = True
    Trainer(resume_config(out, max_steps=STEPS), resume=True)
    captures.on = False
    monkeypatch.undo()
    assert len(captures.copies) >= 4, [p for p, _ in captures.copies]
    for point, folder in captures.copies:
        assert resume_and_finish(folder) == CRASH_STEP, point
        assert_same_curve(folder, straight)


@pytest.mark.slow
def test_sigkill_in_the_middle_of_the_switch_then_resume_with_more_steps(inputs, tmp_path):
    """A real kill -9 of `python -m lm train`, after the first rename of step 3's checkpoint
    (the files of steps 2 and 3 mixed on disk); `--resume --max-steps 7` must then continue
    the curve of a run that went to 7 at once (constant lr: the schedule depends on max_steps)."""
    settings = SETTINGS | dict(min_lr=SETTINGS["lr"], max_steps=7)
    reference = tmp_path / "straight"
    Trainer(TrainConfig(**settings, **inputs, out=str(reference))).train()

    out = tmp_path / "run"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in (settings | inputs | dict(out=out, max_steps=STEPS)).items()]
    killer = textwrap.dedent(f"""
        import os, signal, sys
        from lm import journal
        from lm.__main__ import main
        real_switch = journal._switch
        def switch(folder, manifest, names):
            if manifest["step"] == {CRASH_STEP}:
                real_replace = os.replace
                def replace(src, dst):
                    real_replace(src, dst)
                    os.kill(os.getpid(), signal.SIGKILL)
                os.replace = replace
            return real_switch(folder, manifest, names)
        journal._switch = switch
        sys.exit(main(sys.argv[1:]))
    """)
    killed = subprocess.run([sys.executable, "-c", killer, "train", *flags], cwd=REPO, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert (manifest["step"], manifest["state"]) == (CRASH_STEP, "pending")
    assert len(list(out.glob("*.staged.tmp"))) == 3  # one file of four renamed

    resumed = subprocess.run([sys.executable, "-m", "lm", "train", "--resume", "--out", str(out), "--max-steps", "7"],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"finished the checkpoint of step {CRASH_STEP}" in resumed.stderr
    assert_same_curve(out, reference)


# --- a set that does not match is refused, naming the file ---------------------------------


@pytest.fixture
def run(inputs, tmp_path) -> Path:
    out = tmp_path / "run"
    Trainer(TrainConfig(**SETTINGS | dict(max_steps=2), **inputs, out=str(out))).train()
    return out


def resume(folder: Path) -> None:
    Trainer(resume_config(folder, max_steps=STEPS), resume=True)


def test_weights_of_another_step_are_refused_by_name(run, tmp_path):
    other = tmp_path / "other"
    save_checkpoint(other, tiny_gpt(320, n_layer=1, block_size=32), shakespeare_bpe())
    shutil.copyfile(other / "model.safetensors", run / "model.safetensors")
    with pytest.raises(InconsistentSet, match=r"model\.safetensors .* checkpoint of step 2 .* mixed"):
        resume(run)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_missing_or_changed_state_is_refused_by_name(run, damage):
    if damage == "missing":
        (run / STATE_FILE).unlink()
    else:
        (run / STATE_FILE).write_bytes((run / STATE_FILE).read_bytes()[:100])
    with pytest.raises(InconsistentSet, match="state.pt"):
        resume(run)


def test_a_pending_checkpoint_finishes_from_whichever_copy_matches_and_else_is_refused(run):
    manifest = json.loads((run / MANIFEST_FILE).read_text())
    (run / MANIFEST_FILE).write_text(json.dumps({**manifest, "state": "pending"}))
    staged_path(run, "config.json").write_text("{}")  # not the file the manifest names; the one in place is
    resume(run)
    assert not staged_path(run, "config.json").exists()
    assert json.loads((run / MANIFEST_FILE).read_text())["state"] == "complete"

    (run / MANIFEST_FILE).write_text(json.dumps({**manifest, "state": "pending"}))
    staged_path(run, "config.json").write_text("{}")
    (run / "config.json").write_text((run / "config.json").read_text() + " ")  # now neither is
    with pytest.raises(InconsistentSet, match=r"neither config\.json .* staged copy \.config\.json\.staged\.tmp .* cannot be finished"):
        resume(run)


@pytest.mark.parametrize("manifest", ["not json", "[]", '{"format": "llm-explorer/manifest", "state": "x", "files": {}}',
                                      '{"format": "llm-explorer/manifest", "state": "complete", "files": {"../x": {}}}'])
def test_a_damaged_manifest_is_refused_with_a_message(run, manifest):
    (run / MANIFEST_FILE).write_text(manifest)
    with pytest.raises(InconsistentSet, match="manifest.json"):
        resume(run)


def test_a_folder_without_manifest_still_refuses_a_config_and_state_of_different_steps(run, inputs, tmp_path):
    """Run folders written before manifests: the steps in config.json and state.pt must agree."""
    (run / MANIFEST_FILE).unlink()
    resume(run)  # a whole old-style folder resumes
    state = torch.load(run / STATE_FILE, weights_only=True)
    torch.save({**state, "step": 1}, run / STATE_FILE)
    with pytest.raises(DataError, match=r"config\.json .* step 2 but state\.pt of step 1"):
        resume(run)


def test_a_damaged_state_without_manifest_gets_a_message(run):
    (run / MANIFEST_FILE).unlink()
    (run / STATE_FILE).write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="state.pt .* damaged"):
        resume(run)


@pytest.mark.slow
def test_a_refused_resume_says_so_on_the_command_line_without_a_traceback(run):
    (run / "model.safetensors").write_bytes(b"x" * 10)
    result = subprocess.run([sys.executable, "-m", "lm", "train", "--resume", "--out", str(run)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "error:" in result.stderr and "model.safetensors" in result.stderr and "mixed" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_killed_before_its_first_checkpoint_is_said_to_have_nothing_to_resume(tmp_path):
    (tmp_path / "run").mkdir()
    Run(tmp_path / "run").write_status("running", step=0, max_steps=STEPS)
    with pytest.raises(DataError, match="stopped before its first checkpoint: there is nothing to resume"):
        resume_config(tmp_path / "run")
