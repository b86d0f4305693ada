"""Everything the lessons and pages download, fetched in one go before class: the corpora, the
fine-tuning data sets and OpenAI's tokenizer files. `python -m lm download --all` and the Home page's "Prepare this
machine for class" both run `prepare`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lm.data import CORPORA
from lm.download import DownloadError, NoNetworkError, RemoteFile, fetch
from lm.finetune.data import DATASETS
from lm.tokenizer import TIKTOKEN_ENCODINGS, tiktoken_file


def class_files() -> dict[str, RemoteFile]:
    """By name (the corpus's or the encoding's), in the order they are fetched."""
    files = [corpus.file for corpus in CORPORA.values()] + [dataset.file for dataset in DATASETS.values()]
    files += [tiktoken_file(name) for name in TIKTOKEN_ENCODINGS]
    return {file.name: file for file in files}


def missing_files(files: list[RemoteFile] | None = None) -> list[RemoteFile]:
    return [f for f in (files if files is not None else class_files().values()) if not f.is_present()]


@dataclass(frozen=True)
class Outcome:
    file: RemoteFile
    state: str  # "present" (already there), "downloaded", "failed", "not tried" (the network was down)
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("present", "downloaded")


def prepare(files: list[RemoteFile], progress: Callable[[RemoteFile, int, int], None] | None = None) -> list[Outcome]:
    """Fetch each file that is not already there with the right hash; `progress(file, done, total)`
    in bytes. After the network has failed once, the rest are not tried: offline, this answers
    in one timeout rather than one per file."""
    outcomes: list[Outcome] = []
    offline: str | None = None
    for file in files:
        if file.is_verified():
            outcomes.append(Outcome(file, "present"))
        elif offline:
            outcomes.append(Outcome(file, "not tried", offline))
        else:
            try:
                fetch(file, (lambda done, total, file=file: progress(file, done, total)) if progress else False)
                outcomes.append(Outcome(file, "downloaded"))
            except NoNetworkError as exc:
                offline = f"the network had just failed ({file.title})"
                outcomes.append(Outcome(file, "failed", exc.reason))
            except DownloadError as exc:  # a 404, a bad hash: the next file may still work
                outcomes.append(Outcome(file, "failed", exc.reason))
            except OSError as exc:  # a full disk, a folder it may not write to
                outcomes.append(Outcome(file, "failed", f"{type(exc).__name__}: {exc}"))
    return outcomes
