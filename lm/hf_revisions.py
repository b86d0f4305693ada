"""A real model learning, replayed: Pythia publishes its training checkpoints on the
Hugging Face Hub as revisions (branches step0, step1, step2, ... step512, step1000 ...
step143000), and importing several of them into one run folder gives that folder what a
training run here writes (lm.run_folder): an attention snapshot of a fixed probe text per
checkpoint, each head's detector scores and a loss, at the checkpoint's training step. The
Attention page's "Across training" then replays them as it replays a run trained here; the
last revision is the folder's model, so the other pages open it too.

Every revision is downloaded before anything is written (or read from a folder holding a
folder per revision, for a machine without the network), and the run folder is written beside
its place and renamed in at the end: offline, or with a revision missing, nothing is left half
made. The loss is the model's on the probe text, not Pythia's training loss (which
EleutherAI logged elsewhere): the same short text at every step, so the curve is noisy but
comparable across steps.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from lm.checkpoint import CONFIG_FILE, save_checkpoint
from lm.detectors import snapshot
from lm.gpt2 import check_free_space, runs_folder
from lm.hf_import import IMPORTED, HFImportError, download, load_hf, local_folder
from lm.run_folder import METRICS_FILE, SNAPSHOTS, Run
from lm.sizing import parameter_count

REVISION = re.compile(r"step(\d+)")
# the 154 checkpoints each Pythia model publishes: log-spaced at first, then every 1,000 steps
PYTHIA = re.compile(r"EleutherAI/pythia-[\w.-]+")
PYTHIA_STEPS = (0, *(2**i for i in range(10)), *range(1000, 143_001, 1000))
# a replay worth watching: the start, the end, and steps 1,000-4,000 between, where induction heads are
# reported to form in models like these (2.5-5 B tokens, Olsson et al. 2022; Pythia reads 2 M tokens a step)
SUGGESTED_STEPS = (0, 256, 1000, 2000, 4000, 143_000)
# Short enough that the Across training map labels all of it. The name comes twice: a head that has
# learned to copy (an induction head) looks from its second time back to what followed its first.
PROBE = "Anna Lindqvist sailed to Oslo. Then Anna Lindqvist sailed home."


def revision_step(revision: str) -> int:
    """The training step a revision name says (step1000 -> 1000); a clear error for any other name."""
    match = REVISION.fullmatch(revision.strip())
    if not match:
        raise HFImportError(f"{revision!r} is not a training checkpoint's revision: they are named stepN, "
                            f"such as step0, step1000 or step143000")
    return int(match.group(1))


def parse_revisions(text: str) -> list[str]:
    """A comma-separated list of revisions, in training order, each once; at least two, for a replay."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    revisions = sorted({f"step{revision_step(name)}" for name in names}, key=revision_step)
    if len(revisions) < 2:
        raise HFImportError("give two or more revisions (such as step0,step1000,step143000): one checkpoint "
                            "shows no training; import it alone with --revision")
    return revisions


def training_revisions(repo_id: str) -> list[str]:
    """The training checkpoints a known Hub model publishes as revisions ([] for one that publishes none)."""
    return [f"step{step}" for step in PYTHIA_STEPS] if PYTHIA.fullmatch(repo_id) else []


def training_name(repo_id: str) -> str:
    """The run folder's name for a model's training: NAME-training."""
    return f"{repo_id.split('/')[-1]}-training"


def import_revisions(source: str, revisions: list[str], out: str | os.PathLike | None = None,
                     context: int | None = None, probe: str = PROBE, downloader: Callable | None = None) -> Path:
    """A model's training checkpoints `revisions` (stepN names) as one run folder: a snapshot,
    detector scores and a loss per checkpoint at its step, and the last checkpoint as the
    folder's model. `source`: a Hub id, or a folder holding a folder per revision (step0/,
    step1000/ ...) for a machine without the network. Never overwrites a model or a run."""
    revisions = parse_revisions(",".join(revisions))
    local = local_folder(source)
    out = Path(out) if out else runs_folder(training_name(local.name if local else source))
    if (out / CONFIG_FILE).exists() or (out / SNAPSHOTS).exists():
        raise HFImportError(f"{out} already holds a model or a run; choose another folder or delete it first")
    folders = revision_folders(local, source, revisions, downloader)  # all of them, before any writing
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # what an earlier import cut short left
    partial.mkdir(parents=True)
    try:
        model, tokenizer = _replay(partial, revisions, folders, context, probe)
        provenance = {
            "source": IMPORTED, "model": out.name, "hugging_face_repo": None if local else source,
            "folder": str(local.absolute()) if local else None, "revision": revisions[-1],
            "revisions": revisions, "step": revision_step(revisions[-1]),
            "probe": "the snapshots, detector scores and val_loss (the loss on the probe text) of each revision",
            "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        save_checkpoint(partial, model, tokenizer, provenance)
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


def revision_folders(local: Path | None, source: str, revisions: list[str], downloader: Callable | None) -> list[Path]:
    """Each revision's files: a folder named after it in the folder `local`, or downloaded from the Hub id `source`."""
    if local:
        missing = [revision for revision in revisions if not (local / revision).is_dir()]
        if missing:
            raise HFImportError(f"{local} has no folder {', '.join(missing)}: a model's training is imported from "
                                f"a folder holding one folder per revision, named after it (step0, step1000 ...)")
        return [local / revision for revision in revisions]
    try:
        return [download(source, revision, downloader) for revision in revisions]
    except HFImportError as exc:
        raise HFImportError(f"{exc} For its training, copy each revision's files into a folder named after it "
                            f"(step0, step1000 ...), all in one folder, and import that folder with --revisions.") from exc


def _replay(folder: Path, revisions: list[str], sources: list[Path], context: int | None, probe: str):
    """Each revision's snapshot, scores and loss into the run folder; the last model and its tokenizer."""
    run, first = Run(folder), None
    for revision, source in zip(revisions, sources):
        model, tokenizer = load_hf(source, context)
        if first is None:
            first = model.config
            check_free_space(folder, 4 * parameter_count(first), f"write the checkpoint to {folder}")
            ids = tokenizer.encode(probe)[: model.config.block_size]
            if len(ids) < 2:
                raise HFImportError("the probe text must be at least two tokens long")
        elif model.config != first:
            raise HFImportError(f"{revision} is a model of another shape than {revisions[0]}: not one training run")
        step = revision_step(revision)
        snapshot(run, step, model, ids, tokenizer, list(range(tokenizer.vocab_size)))
        with torch.inference_mode():
            loss = model(torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])).loss.item()
        run.append(METRICS_FILE, {"step": step, "val_loss": loss})
    return model, tokenizer
