"""Importing small open-weight models from the app through lm.hf_import, as import jobs
(explorer.gpt2_import runs them in the server's threads, shared by every session): one of
the known models (lm.open_models) downloaded from the Hugging Face Hub, or a model folder on
this machine. What a known model costs is said, and a model that cannot run here refused,
before anything is downloaded. Pythia's training checkpoints come as one run folder whose
attention the Attention page replays across training (lm.hf_revisions)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from explorer.gpt2_import import ImportJob, Progress, start_job
from explorer.paths import base_runs_root
from lm.gpt2 import check_free_space, reporting_bar
from lm.hf_import import import_hf
from lm.hf_revisions import import_revisions, training_name
from lm.open_models import OPEN_MODELS
from lm.sizing import inference_memory_bytes, memory_problem, parameter_count

KIND = "hf"
WEIGHTS = "*.safetensors"


@dataclass(frozen=True)
class Cost:
    """What a known model costs here, from its config alone."""

    parameters: int
    download_bytes: int  # its weights as published, at 16 bits a weight
    memory_bytes: int  # to run it here: fp32 weights, a full-context KV cache and the logits
    problem: str | None  # why it cannot run on this machine, or None


def cost(name: str) -> Cost:
    config = OPEN_MODELS[name].config()
    return Cost(parameter_count(config), 2 * parameter_count(config), inference_memory_bytes(config),
                memory_problem(config, training=False))


def default_folder(name: str) -> Path:
    """Where a known model is imported: its Hub name in the base runs root (the class's shared models)."""
    return base_runs_root() / OPEN_MODELS[name].repo_id.split("/")[-1]


def start_download(name: str) -> ImportJob:
    """Import a known model from the Hub (or the Hugging Face cache, where a second import finds it)."""
    return start_job((KIND, name, None), OPEN_MODELS[name].label.split(" (")[0], lambda report: _download(name, report))


def start_folder(path: str) -> ImportJob:
    """Import the model in a folder on this machine (the caller checks who may read server paths)."""
    folder = Path(path).expanduser()
    return start_job((KIND, folder.name, path), folder.name or path, lambda report: _from_folder(folder))


def _from_folder(folder: Path) -> Path:
    if not folder.is_dir():  # (import_hf would take a missing "owner/name" for a Hub id and download it)
        raise ValueError(f"there is no folder {folder} on this machine")
    return import_hf(str(folder), base_runs_root() / folder.resolve().name)


def _download(name: str, report: Progress) -> Path:
    check_before_download(name, copies=1)
    return import_hf(OPEN_MODELS[name].repo_id, default_folder(name), downloader=reporting_downloader(report))


def training_folder(name: str) -> Path:
    """Where a known model's training checkpoints are imported, as one run folder (lm.hf_revisions)."""
    return base_runs_root() / training_name(OPEN_MODELS[name].repo_id)


def start_revisions(name: str, revisions: list[str]) -> ImportJob:
    """Import several of a known model's training checkpoints from the Hub into one run folder."""
    label = f"{len(revisions)} checkpoints of {OPEN_MODELS[name].label.split(' (')[0]}"
    return start_job((KIND, f"{name}-training", None), label, lambda report: _revisions(name, revisions, report))


def _revisions(name: str, revisions: list[str], report: Progress) -> Path:
    check_before_download(name, copies=len(revisions))
    calls = iter(range(len(revisions)))

    def fetch(repo_id: str, revision: str | None, allow_patterns: list[str]) -> str:
        """One revision's download, its bytes reported as a share of all of them (each is the same size)."""
        done = next(calls)
        downloader = reporting_downloader(lambda got, total: report(done * total + got, len(revisions) * total))
        return downloader(repo_id, revision, allow_patterns)

    return import_revisions(OPEN_MODELS[name].repo_id, revisions, training_folder(name), downloader=fetch)


def check_before_download(name: str, copies: int) -> None:
    """Refuse a model this machine cannot run, or `copies` of it the Hugging Face cache has no room for."""
    model, figures = OPEN_MODELS[name], cost(name)
    if figures.problem:
        raise ValueError(f"{model.label} cannot run on this machine: {figures.problem.split(';')[0]}")
    from huggingface_hub import constants

    check_free_space(Path(constants.HF_HUB_CACHE), copies * figures.download_bytes,
                      f"download {model.repo_id} into the Hugging Face cache")


def reporting_downloader(report: Progress):
    """snapshot_download in two passes, so the bar measures the weights: the small files
    first, silently, then the .safetensors with their bytes reported."""

    def fetch(repo_id: str, revision: str | None, allow_patterns: list[str]) -> str:
        from huggingface_hub import snapshot_download

        small = [pattern for pattern in allow_patterns if pattern != WEIGHTS]
        snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=small,
                          tqdm_class=reporting_bar(lambda done, total: None))
        return snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=[WEIGHTS],
                                 tqdm_class=reporting_bar(report))

    return fetch
