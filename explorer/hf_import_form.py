"""The Home page's "Small open-weight models": choose a known model to download (its size and
what it needs shown first) or a model folder on this machine, import it (explorer.hf_import_jobs),
watch the progress, then open it on the pages. As for GPT-2 (explorer.gpt2_import_form, whose
progress and links this reuses), in classroom mode only the teacher imports."""

from __future__ import annotations

import streamlit as st

from explorer.gpt2_import import ImportJob
from explorer.gpt2_import_form import FROM_HUB, import_section, watch_imports
from explorer.hf_import_jobs import (
    KIND, cost, default_folder, start_download, start_folder, start_revisions, training_folder,
)
from explorer.plain_text import plain
from explorer.url_state import BIND
from explorer.workspace import can_read_server_paths
from lm.hf_revisions import SUGGESTED_STEPS, training_revisions
from lm.open_models import OPEN_MODELS

FROM_FOLDER = "A model folder on this machine"
TRAINED, TRAINING = "The trained model", "Its training, checkpoint by checkpoint"
JOB = "hf_job"  # session key: the key of the import this session started


def open_models_form() -> None:
    """The controls (for those who may import), then links to every imported model on disk."""
    known = {default_folder(name) for name in OPEN_MODELS} | {training_folder(name) for name in OPEN_MODELS}
    import_section(import_controls, known,
                   "Your teacher imports open-weight models for the class; they then open here and on the other pages.")


def import_controls() -> ImportJob | None:
    source = st.radio("Weights", [FROM_HUB, FROM_FOLDER], key="hf_source", horizontal=True, bind=BIND)
    if source == FROM_HUB:
        name = st.selectbox("Model", list(OPEN_MODELS), key="hf_model", format_func=lambda n: OPEN_MODELS[n].label,
                            bind=BIND)
        revisions = choose_revisions(name)
        blocked = show_cost(name, revisions) or (revisions is not None and len(revisions) < 2)
    else:
        st.text_input("Path to a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)",
                      key="hf_path", placeholder="/home/me/models/SmolLM2-135M")
        blocked, revisions = not st.session_state.get("hf_path", "").strip(), None
    label = "Import the model" if revisions is None else "Import its training"
    st.button(label, key="hf_import", type="primary", on_click=start, disabled=blocked)
    return watch_imports(KIND, JOB)


def choose_revisions(name: str) -> list[str] | None:
    """For a model that publishes its training checkpoints (Pythia), which of them to import
    into one run folder; None for the trained model alone."""
    published = training_revisions(OPEN_MODELS[name].repo_id)
    if not published or st.radio("Import", [TRAINED, TRAINING], key="hf_what", horizontal=True, bind=BIND) == TRAINED:
        return None
    chosen = st.multiselect(
        "Training checkpoints", published, default=[f"step{step}" for step in SUGGESTED_STEPS], key="hf_revisions",
        help="Each is the whole model at that training step, downloaded whole. The Attention page's Across training "
             "then replays every head from step 0, where the weights are random, to the end of training.")
    if len(chosen) < 2:
        st.caption("Choose two checkpoints or more: one shows no training.")
    return chosen


def show_cost(name: str, revisions: list[str] | None = None) -> bool:
    """The chosen model's size and needs (its `revisions`' downloads, if any), before anything is
    downloaded; True when it cannot run here."""
    figures, copies = cost(name), len(revisions) if revisions else 1
    parameters, download, memory = st.columns(3)
    parameters.metric("Parameters", f"{figures.parameters / 1e6:,.0f} M")
    each = "At 16 bits a weight, as published"
    download.metric("Download", f"≈ {copies * figures.download_bytes / 1e9:.2f} GB",
                    help=f"{copies} checkpoints of ≈ {figures.download_bytes / 1e9:.2f} GB each. {each}" if revisions
                    else each)
    memory.metric("Memory to run here", f"{figures.memory_bytes / 2**30:.1f} GiB",
                  help="Its weights in 32-bit floats, a full context's key/value cache and the logits")
    folder = (training_folder(name) if revisions is not None else default_folder(name)).name
    st.caption(plain(f"From huggingface.co/{OPEN_MODELS[name].repo_id}, into the Hugging Face cache once; "
                     f"imported as {folder}" + (". The Attention page's Across training replays it."
                                                if revisions is not None else ".")))
    if figures.problem:
        st.warning(plain(f"Too big for this machine: {figures.problem.split(';')[0]}."))
    return figures.problem is not None


def start() -> None:
    """The button's callback, with the widgets' latest values."""
    if not can_read_server_paths():
        return
    if st.session_state.get("hf_source") == FROM_FOLDER:
        path = st.session_state.get("hf_path", "").strip()
        if path:
            st.session_state[JOB] = start_folder(path).key
    else:
        name = st.session_state.get("hf_model", next(iter(OPEN_MODELS)))
        revisions = st.session_state.get("hf_revisions") if st.session_state.get("hf_what") == TRAINING else None
        if revisions and training_revisions(OPEN_MODELS[name].repo_id):
            st.session_state[JOB] = start_revisions(name, revisions).key
        else:
            st.session_state[JOB] = start_download(name).key


