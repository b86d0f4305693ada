"""Files the project downloads (corpora, tiktoken's rank files): fetched once with
timeouts, checked against a known sha256, kept where later runs find them.

Every download here has a connect and a read timeout, so a network that drops
packets fails in seconds instead of hanging a page or a lesson."""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import platformdirs
import pooch
import requests

from lm.atomic import exclusive

pooch.get_logger().setLevel("WARNING")  # callers show their own progress, not pooch's log lines

TIMEOUT = (5.0, 20.0)  # seconds: to connect, then between two reads of the answer

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


def cache_root() -> Path:
    """Where downloads are kept: $LM_DATA_DIR, else the user's cache folder (which a reboot keeps)."""
    return Path(os.environ.get("LM_DATA_DIR") or platformdirs.user_cache_dir("llm-explorer"))


class DownloadError(ValueError):
    """A file that could not be fetched; the message says why and what to do instead, `reason`
    only why (for a list of files)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class NoNetworkError(DownloadError):
    """The server could not be reached at all (no network, a proxy or firewall, a timeout)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: where from, its hash, and the folder it belongs in (a function,
    read when used, because environment variables choose the folders)."""

    name: str
    title: str
    url: str
    sha256: str
    size: int  # bytes, to say how big a download is before it starts
    folder: Callable[[], Path]
    filename: str
    instead: str = ""  # what else the user can do when it cannot be downloaded
    member: str = ""  # the file is this member of the zip archive at `url` (sha256 and size are the member's)

    @property
    def path(self) -> Path:
        return self.folder() / self.filename

    def is_present(self) -> bool:
        """The file is there (cheap enough for every page view; fetch checks the hash)."""
        return self.path.is_file()

    def is_verified(self) -> bool:
        return self.is_present() and _sha256(self.path) == self.sha256


def fetch(file: RemoteFile, progress: Progress | bool = False) -> Path:
    """The file's path, downloading it first unless a copy with the right hash is there.

    `progress` is True for a terminal progress bar, or a callback (done, total) in bytes.
    Processes and sessions fetching the same file at once download it once."""
    file.folder().mkdir(parents=True, exist_ok=True)
    with exclusive(file.path):
        if file.is_verified():
            return file.path
        bar = _ProgressAdapter(progress) if callable(progress) else bool(progress)
        try:
            downloader = pooch.HTTPDownloader(progressbar=bar, timeout=TIMEOUT)
            if file.member:
                _fetch_member(file, downloader)
            else:
                pooch.retrieve(file.url, known_hash=f"sha256:{file.sha256}", fname=file.filename, path=file.folder(),
                               downloader=downloader)
        except requests.HTTPError as exc:
            why = f"the server answered {exc.response.status_code}"
            raise DownloadError(f"{why.capitalize()} for {file.url}: the file is not there. {_what_to_do(file)}",
                                why) from exc
        except requests.RequestException as exc:
            why = _reason(exc)
            raise NoNetworkError(f"Could not download {file.title} from {file.url} ({why}). {_what_to_do(file)}",
                                 why) from exc
        except ValueError as exc:  # pooch: the downloaded bytes do not match the known hash
            raise DownloadError(f"The download of {file.title} is not the expected file (sha256 mismatch); "
                                "try again.", "the downloaded bytes are not the expected file (sha256)") from exc
    return file.path


def _fetch_member(file: RemoteFile, downloader) -> None:
    """A member of a zip archive: the archive (whose hash nobody publishes) is downloaded into a
    temporary folder beside the file, the member extracted, checked against its own hash, and
    moved into place; the archive is deleted."""
    with tempfile.TemporaryDirectory(dir=file.folder()) as tmp:
        try:
            extracted = pooch.retrieve(file.url, known_hash=None, fname="archive.zip", path=tmp, downloader=downloader,
                                       processor=pooch.Unzip(members=[file.member]))
        except (zipfile.BadZipFile, KeyError) as exc:  # not a zip, or without the member
            raise ValueError(f"the download is not a zip archive holding {file.member} ({exc})") from None
        member = Path(extracted[0])
        if _sha256(member) != file.sha256:
            raise ValueError(f"{file.member} in the archive does not match the known sha256")
        os.replace(member, file.path)


def _what_to_do(file: RemoteFile) -> str:
    return (f"On a connected machine run `python -m lm download --all` and copy the file to {file.path}"
            f"{', or ' + file.instead if file.instead else ''}.")


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return f"no answer within {TIMEOUT[0]:g} s to connect or {TIMEOUT[1]:g} s to read: the network drops it"
    return f"{type(exc).__name__}: no network?"


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class _ProgressAdapter:
    """The tqdm-like object pooch drives, forwarding (bytes done, bytes total) to a callback."""

    def __init__(self, callback: Progress):
        self.callback, self.total, self.done = callback, 0, 0

    def update(self, n: int) -> None:
        self.done += n
        self.callback(min(self.done, self.total or self.done), self.total)

    def reset(self) -> None:
        self.done = 0

    def close(self) -> None:
        pass
