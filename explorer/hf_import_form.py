"""The Home page's "Small open-weight models": choose a known model to download (its size and
what it needs shown first) or a model folder on this machine, import it (explorer.hf_import_jobs),
watch the progress, then open it on the pages. As for GPT-2 (explorer.gpt2_import_form, whose
progress and links this reuses), in classroom mode only the teacher imports."""

from __future__ import annotations

import streamlit as st

from explorer.gpt2_import import ImportJob
from explorer.gpt2_import_form import FROM_HUB, import_section, watch_imports
from explorer.hf_import_jobs import KIND, cost, default_folder, start_download, start_folder
from explorer.plain_text import plain
from explorer.url_state import BIND
from explorer.workspace import can_read_server_paths
from lm.open_models import OPEN_MODELS

FROM_FOLDER = "A model folder on this machine"
JOB = "hf_job"  # session key: the key of the import this session started


def open_models_form() -> None:
    """The controls (for those who may import), then links to every imported model on disk."""
    import_section(import_controls, {default_folder(name) for name in OPEN_MODELS},
                   "Your teacher imports open-weight models for the class; they then open here and on the other pages.")


def import_controls() -> ImportJob | None:
    source = st.radio("Weights", [FROM_HUB, FROM_FOLDER], key="hf_source", horizontal=True, bind=BIND)
    if source == FROM_HUB:
        name = st.selectbox("Model", list(OPEN_MODELS), key="hf_model", format_func=lambda n: OPEN_MODELS[n].label,
                            bind=BIND)
        blocked = show_cost(name)
    else:
        st.text_input("Path to a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)",
                      key="hf_path", placeholder="/home/me/models/SmolLM2-135M")
        blocked = not st.session_state.get("hf_path", "").strip()
    st.button("Import the model", key="hf_import", type="primary", on_click=start, disabled=blocked)
    return watch_imports(KIND, JOB)


def show_cost(name: str) -> bool:
    """The chosen model's size and needs, before anything is downloaded; True when it cannot run here."""
    figures = cost(name)
    parameters, download, memory = st.columns(3)
    parameters.metric("Parameters", f"{figures.parameters / 1e6:,.0f} M")
    download.metric("Download", f"≈ {figures.download_bytes / 1e9:.2f} GB", help="At 16 bits a weight, as published")
    memory.metric("Memory to run here", f"{figures.memory_bytes / 2**30:.1f} GiB",
                  help="Its weights in 32-bit floats, a full context's key/value cache and the logits")
    st.caption(plain(f"From huggingface.co/{OPEN_MODELS[name].repo_id}, into the Hugging Face cache once; "
                     f"imported as {default_folder(name).name}."))
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
        st.session_state[JOB] = start_download(st.session_state.get("hf_model", next(iter(OPEN_MODELS)))).key


