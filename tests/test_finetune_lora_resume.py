"""Resuming a LoRA run trains the layers its saved adapter holds. A run on a mixture of experts
made before `mlp` stopped adapting the routers (its settings say attn,mlp; its adapter holds the
routers' too) resumes as it trained, and targets or a rank other than the run's are refused,
naming the ones to pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lm.__main__ import main
from lm.checkpoint import read_config
from lm.finetune.config import FinetuneConfig
from lm.finetune.loop import FinetuneRun, resume_settings
from lm.finetune.lora import adapted_layers, adapter_state, apply_lora, lora_layers, resume_targets
from tests.checkpoints import make_checkpoint, tiny_gpt

MOE = dict(n_experts=4, experts_top_k=2)
OLD, SAVED = "attn,mlp", "attn,mlp,mlp.router"  # what an old run recorded, and what names the layers it saved
ROUTER = "transformer.h.0.mlp.router"


@pytest.fixture
def old_run(tmp_path) -> Path:
    """A run folder as the old code left it: trained on SAVED's layers, with OLD in its record."""
    source = make_checkpoint(tmp_path / "source", block_size=64, **MOE)
    rows = [("WIN a FREE prize now", "spam"), ("claim your cash: txt WIN", "spam"), ("see you at lunch", "ham"),
            ("ok I'll call you later", "ham")] * 4
    spam = tmp_path / "spam.csv"  # classify: no samples or continuations generated, so it takes a second
    spam.write_text("text,label\n" + "".join(f"{t},{l}\n" for t, l in rows), encoding="utf-8")
    run = FinetuneRun(FinetuneConfig(method="classify", source=str(source), out=str(tmp_path / "run"), data=str(spam),
                                     batch_size=2, max_steps=2, eval_interval=2, eval_batches=1, lora_rank=2,
                                     lora_targets=SAVED, lora_save="adapter"))
    run.cfg.lora_targets = OLD  # the old code's words for these same layers
    assert run.train() == "finished"
    folder = Path(run.cfg.out)
    assert read_config(folder)[1]["finetune"]["settings"]["lora_targets"] == OLD
    assert f"{ROUTER}.lora_A" in load_file(folder / "adapter.safetensors")
    return folder


def finetune(folder: Path, *flags: str) -> int:
    return main(["finetune", "classify", "--resume", "--out", str(folder), "--max-steps", "4", *flags])


def test_an_old_moe_run_resumes_on_the_layers_it_saved(old_run, capsys):
    saved = torch.load(old_run / "state.pt", weights_only=True)["trainable"]
    run = FinetuneRun(resume_settings(str(old_run)), resume=True)
    assert run.cfg.lora_targets == SAVED and ROUTER in lora_layers(run.model)
    assert set(lora_layers(run.model)) == adapted_layers(saved)
    trainable = {name: p for name, p in run.model.named_parameters() if p.requires_grad}  # the head's too
    assert trainable.keys() == saved.keys() and all(torch.equal(p.cpu(), saved[name]) for name, p in trainable.items())

    assert finetune(old_run) == 0
    out = capsys.readouterr().out
    assert f"note: {old_run} saved LoRA adapters" in out and f"as --lora-targets {SAVED}" in out
    training = read_config(old_run)[1]
    assert training["step"] == 4 and training["finetune"]["settings"]["lora_targets"] == SAVED  # said from now on
    assert training["finetune"]["lora"]["targets"] == SAVED.split(",")
    after = torch.load(old_run / "state.pt", weights_only=True)["trainable"]
    assert not torch.equal(after[f"{ROUTER}.lora_B"], saved[f"{ROUTER}.lora_B"])  # the routers' adapters trained on


def test_targets_or_a_rank_other_than_the_runs_are_refused_naming_the_ones_to_pass(old_run, capsys):
    before = {path: path.read_bytes() for path in old_run.rglob("*") if path.is_file()}
    for flags, fix in ((("--lora-targets", "attn"), f"pass --lora-targets {SAVED} or leave it out"),
                       (("--lora-rank", "4"), "pass --lora-rank 2 or leave it out")):
        with pytest.raises(SystemExit) as refused:
            finetune(old_run, *flags)
        assert refused.value.code == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and error.endswith(fix)
    assert {path: path.read_bytes() for path in old_run.rglob("*") if path.is_file()} == before  # nothing written
    assert finetune(old_run, "--lora-targets", SAVED) == 0  # what the old message made users pass still works
    assert "note:" not in capsys.readouterr().out


def test_resume_targets_keep_what_names_the_saved_layers():
    """No model trains here: the targets a resume settles on, from a saved adapter's names."""
    def saved(targets: str, **config) -> dict:
        return adapter_state(apply_lora(tiny_gpt(64, **config), rank=2, alpha=4.0, targets=targets))

    moe, dense = tiny_gpt(64, **MOE), tiny_gpt(64)
    assert resume_targets(moe, saved(OLD, **MOE), OLD, OLD, 2) == OLD  # a run of today: as it is
    assert resume_targets(moe, saved(SAVED, **MOE), OLD, OLD, 2) == SAVED
    one = "mlp.experts.0.c_fc"
    assert resume_targets(moe, saved(one, **MOE), one, one, 2) == one
    assert resume_targets(dense, {"classifier.weight": torch.zeros(2, 32)}, OLD, OLD, 2) == OLD  # the loop says why
    with pytest.raises(ValueError, match="on --lora-targets attn, not attn,mlp: "):
        resume_targets(dense, saved("attn"), OLD, "attn", 2)
    block_0 = {k: v for k, v in saved(f"{one},mlp.router", **MOE).items() if ".h.0." in k}
    assert resume_targets(moe, block_0, one, one, 2) \
        == "h.0.mlp.experts.0.c_fc,h.0.mlp.router"  # no kind of layer is there whole: by their own names
