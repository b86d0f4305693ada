"""Fine-tune runs: what the Fine-tune page asks for (a FinetuneRequest), started as
`python -m lm finetune METHOD --from CHECKPOINT --out FOLDER ...` through the run manager
(explorer.runs.launch: its own process group, the training line, the class's limits), and
found again among the runs. The trainer writes the folder; the app adds finetune.json (the
request, so the page can say what a run is before its first checkpoint) and, for an upload,
the data file it trains on."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from explorer import runs, workspace
from lm.atomic import write_json
from lm.checkpoint import CONFIG_FILE
from lm.run_folder import EVALUATION_FILE, read_record

REQUEST_FILE = "finetune.json"  # the app's: the request as the page made it
UPLOAD_STEM = "finetune-data"  # an uploaded data set, kept in the run folder with its own extension
METHODS = {  # the CLI's method: (title on the page, what it teaches)
    "continue": ("Continue pretraining", "the same next-token loss on a new text, at a lower learning rate"),
    "classify": ("Classify", "a new output head that sorts messages into classes (spam or not)"),
    "instruct": ("Follow instructions", "answers to instructions in the Alpaca template, the loss on the answers only"),
    "dpo": ("Prefer answers (DPO)", "of two answers to each prompt, make the chosen one likelier than the rejected"),
}
LORA_TARGETS = {"attn": "attention (q, k, v and output)", "mlp": "MLP (both layers)"}


@dataclass(frozen=True)
class FinetuneRequest:
    method: str
    source: str  # the starting checkpoint's folder
    data: str  # a data set or corpus name, or the path of a file (an upload is copied into the run first)
    max_steps: int
    lr: float
    batch_size: int
    eval_interval: int
    seed: int = 1337
    lora_rank: int = 0  # 0: no LoRA, every weight trains
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ("attn",)
    lora_save: str = "merge"
    trainable_blocks: int | None = None  # without LoRA: only the last N blocks, the final norm (and a new head) train
    beta: float | None = None  # dpo
    threads: int = 0
    upload: tuple[str, bytes] | None = field(default=None, repr=False)  # (file name, bytes) to train on

    def arguments(self, out: str, data: str) -> list[str]:
        """The `lm finetune` command line (without `python -m lm`) that trains this request into `out`."""
        args = ["finetune", self.method, "--from", self.source, "--out", out, "--data", data,
                "--max-steps", str(self.max_steps), "--lr", f"{self.lr:g}", "--batch-size", str(self.batch_size),
                "--eval-interval", str(self.eval_interval), "--seed", str(self.seed)]
        if self.threads:
            args += ["--threads", str(self.threads)]
        if self.lora_rank:
            args += ["--lora-rank", str(self.lora_rank), "--lora-alpha", f"{self.lora_alpha:g}",
                     "--lora-targets", ",".join(self.lora_targets), "--lora-save", self.lora_save]
        elif self.trainable_blocks is not None:  # LoRA decides what trains by itself
            args += ["--trainable-blocks", str(self.trainable_blocks)]
        if self.method == "dpo" and self.beta is not None:
            args += ["--beta", f"{self.beta:g}"]
        return args

    def record(self, data: str) -> dict:
        """What finetune.json keeps: the request as run, the upload replaced by its file's path."""
        return {**{k: v for k, v in asdict(self).items() if k != "upload"}, "data": data}


def start_finetune(name: str, request: FinetuneRequest) -> runs.RunInfo:
    """Start `request` in a new run folder `name` under the person's runs root; refused (RunError)
    for a bad or taken name or past the class's limits, with nothing left behind."""
    problem = runs.name_problem(name) or workspace.run_limit_problem(runs.list_runs(runs.runs_root()))
    if problem:
        raise runs.RunError(problem)
    folder = runs.run_folder(name)
    try:
        folder.mkdir(parents=True)
    except FileExistsError:  # another session took the name a moment ago
        raise runs.RunError(f"a run named {name!r} already exists: choose another name") from None
    try:
        data = request.data
        if request.upload is not None:
            path = folder / (UPLOAD_STEM + Path(request.upload[0]).suffix.lower())
            path.write_bytes(request.upload[1])
            data = str(path.resolve())
        threads = request.threads or workspace.threads_per_run()  # slots share the cores
        write_json(folder / REQUEST_FILE, request.record(data), indent=2)
        return runs.launch(folder, FinetuneRequest(**{**asdict(request), "threads": threads}).arguments(
            str(folder.resolve()), data))
    except (runs.RunError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise runs.RunError(str(exc)) from None


def finetune_record(folder: Path) -> dict | None:
    """How a run was fine-tuned: the page's request, else (a run started from the command line)
    the "finetune" section the trainer writes into its checkpoint's config, else, before its first
    checkpoint, the method its evaluation of the starting model names; None for other runs."""
    request = read_record(folder / REQUEST_FILE)
    if request is not None:
        return request
    config = read_record(folder / CONFIG_FILE) or {}
    section = (config.get("training") or {}).get("finetune")
    if isinstance(section, dict):
        return section
    method = read_evaluation(folder).get("method")
    return {"method": method} if method in METHODS else None


def trained_counts(folder: Path) -> tuple[int, int] | None:
    """(trainable, total) parameters as the trainer counted them, once its config is written."""
    config = read_record(folder / CONFIG_FILE) or {}
    section = (config.get("training") or {}).get("finetune") or {}
    counts = section.get("trainable_parameters"), section.get("total_parameters")
    return counts if all(isinstance(c, int) and c >= 0 for c in counts) and counts[1] else None


def finetune_runs(listed: list[runs.RunInfo]) -> list[runs.RunInfo]:
    """The fine-tune runs among `listed` (runs.list_runs: those the person on this page may see, newest first)."""
    return [info for info in listed if finetune_record(info.folder) is not None]


def read_evaluation(folder: Path) -> dict:
    """evaluation.json: {"method", "before": {...}, "after": {...}}, each part present once measured."""
    record = read_record(folder / EVALUATION_FILE) or {}
    return {key: value for key, value in record.items() if key == "method" or isinstance(value, dict)}
