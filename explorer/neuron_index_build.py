"""A model's neuron index, built once per model in a background thread so the Neurons tab
shows the neurons at once and the corpus passages when they are ready.

Indexing runs every window of a corpus sample through the model: seconds on a small model,
half a minute for GPT-2 small on a busy CPU, too long to hold the page. One worker thread
builds one index at a time for the whole server (every session shares the result, keyed on the
weights file's version like cached_on_checkpoint) and reports how far it is. The thread makes
no Streamlit calls; the page polls the Build it gets back."""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from explorer.inside_examples import corpus_sample
from explorer.paths import FileStamp
from lm.checkpoint import WEIGHTS_FILE, Checkpoint
from lm.neurons import NeuronIndex, index_neurons

KEPT = 4  # indexes kept, the most recently asked for

_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neuron-index")
_LOCK = threading.Lock()
_BUILDS: OrderedDict[FileStamp, Build] = OrderedDict()


@dataclass
class Build:
    """One model's index: `done` of `total` windows so far; when `finished`, the index (None when
    this machine has no corpus sample for the model) or the error that stopped it."""

    total: int = 0
    done: int = 0
    finished: bool = False
    description: str = ""
    index: NeuronIndex | None = None
    error: Exception | None = None


def neuron_index(checkpoint: Checkpoint) -> Build:
    """This model's index build, started if it is not under way or done (OSError if the weights are gone)."""
    stamp = FileStamp.of(checkpoint.path / WEIGHTS_FILE)
    with _LOCK:
        build = _BUILDS.get(stamp)
        if build is None:
            build = _BUILDS[stamp] = Build()
            _WORKER.submit(_run, build, checkpoint)
            while len(_BUILDS) > KEPT:
                _BUILDS.popitem(last=False)
        _BUILDS.move_to_end(stamp)
    return build


def _run(build: Build, checkpoint: Checkpoint) -> None:
    try:
        sample = corpus_sample(checkpoint)
        if sample is not None:
            build.description, windows = sample
            build.total = len(windows)
            build.index = index_neurons(checkpoint.model, windows, batch=4,
                                        progress=lambda done: setattr(build, "done", done))
    except Exception as exc:  # shown by the page; the thread must not die silently
        build.error = exc
    finally:
        build.finished = True
