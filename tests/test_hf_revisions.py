"""Pythia's training checkpoints as one run folder (lm.hf_revisions): a fake Hub serves small
random GPT-NeoX models that transformers saved, one per revision; the run folder must hold
one attention snapshot per revision at its step, in step order, each equal to transformers'
own attention for that revision, with detector scores and the loss on the probe; the last
revision is the folder's model; the Attention page's "Across training" replays them. Bad
names, models of two shapes and a missing network are refused with nothing left behind."""

from __future__ import annotations

import json

import huggingface_hub
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from explorer.gpt2_import_form import FROM_HUB
from explorer.hf_import_form import TRAINING
from explorer.training_snapshots import even_steps
from lm.__main__ import main
from lm.checkpoint import load_checkpoint
from lm.hf_import import HFImportError
from lm.hf_revisions import PROBE, PYTHIA_STEPS, import_revisions, parse_revisions
from lm.open_models import OPEN_MODELS
from lm.run_folder import read_probe, snapshot_path, snapshot_steps
from lm.sizing import parameter_count
from tests.conftest import open_page
from tests.helpers import read_jsonl
from tests.test_attention_page import as_array, charts, show_tab
from tests.test_hf_import import MODELS, hub_offline, save_random, tokenizer_file  # noqa: F401  (fixtures)

REPO = "EleutherAI/pythia-14m"
REVISIONS = ["step0", "step512", "step143000"]
NEOX = "pythia parallel partial rotary"


@pytest.fixture(scope="module")
def hub(tmp_path_factory, tokenizer_file):  # noqa: F811
    """Each revision's folder, a random GPT-NeoX saved by transformers (its own seed), and its model."""
    root = tmp_path_factory.mktemp("hub")
    models = {revision: save_random(root / revision, NEOX, tokenizer_file, seed=i) for i, revision in enumerate(REVISIONS)}
    return root, models


def fake_downloader(root, asked: list | None = None):
    def fetch(repo_id, revision, allow_patterns):
        assert repo_id == REPO
        if asked is not None:
            asked.append(revision)
        return str(root / revision)
    return fetch


@pytest.fixture(scope="module")
def imported(hub, tmp_path_factory):
    root, _ = hub
    asked = []
    out = import_revisions(REPO, ["step143000", "step0", "step512"], tmp_path_factory.mktemp("runs") / "pythia-training",
                           downloader=fake_downloader(root, asked))
    return out, asked


def test_one_snapshot_per_revision_in_step_order_each_the_revisions_own_attention(hub, imported):
    folder, asked = imported
    assert asked == REVISIONS  # downloaded in training order
    assert snapshot_steps(folder) == [0, 512, 143_000]
    ids, _ = read_probe(folder)
    assert len(ids) > 20
    for revision, step in zip(REVISIONS, (0, 512, 143_000)):
        with torch.no_grad():
            theirs = torch.stack(hub[1][revision](torch.tensor([ids]), output_attentions=True).attentions)[:, 0]
        snapshot = load_file(snapshot_path(folder, step))["attention"]
        assert snapshot.dtype == torch.float16
        torch.testing.assert_close(snapshot.float(), theirs, atol=2e-3, rtol=0)


def test_each_revision_has_its_scores_and_loss_and_the_last_is_the_model(hub, imported, tokenizer_file):  # noqa: F811
    folder, _ = imported
    detectors = read_jsonl(folder / "detectors.jsonl")
    assert [d["step"] for d in detectors] == [0, 512, 143_000]
    assert np.array(detectors[0]["scores"]["previous_token"]).shape == (2, 3)  # layers, heads
    metrics = read_jsonl(folder / "metrics.jsonl")
    ids = torch.tensor([read_probe(folder)[0]])
    for record, revision in zip(metrics, REVISIONS):
        with torch.no_grad():
            expected = hub[1][revision](ids, labels=ids).loss.item()  # transformers shifts the labels itself
        assert record["val_loss"] == pytest.approx(expected, rel=1e-4)
    checkpoint = load_checkpoint(folder)
    with torch.no_grad():
        torch.testing.assert_close(checkpoint.model(ids).logits, hub[1]["step143000"](ids).logits, atol=1e-4, rtol=0)
    assert checkpoint.training["revisions"] == REVISIONS and checkpoint.training["hugging_face_repo"] == REPO
    assert not list(folder.parent.glob(".*partial"))


def test_the_attention_page_replays_the_revisions(imported, app_dirs):
    folder, _ = imported
    runs = app_dirs / "runs"
    runs.mkdir(exist_ok=True)
    (runs / "pythia-14m-training").symlink_to(folder)
    at = show_tab(open_page("app_pages/attention.py", model="pythia-14m-training"), "Across training")
    slider = at.select_slider(key="att_train_step_pythia-14m-training")
    assert slider.options == ["0", "512", "143,000"] and slider.value == 143_000
    slider.set_value(0).run()
    assert not at.exception, at.exception
    head_map, history = charts(at)
    shown = as_array(head_map["data"][0]["z"])  # the map labels the last 16 of the probe's 64 tokens here
    expected = load_file(snapshot_path(folder, 0))["attention"][0, 0].float().numpy()[-16:, -16:]
    np.testing.assert_allclose(shown, expected, atol=1e-6)
    assert head_map["layout"]["title"]["text"] == "layer 0, head 0 at step 0"
    traces = {trace["name"]: trace for trace in history["data"]}  # evenly spaced, as the slider: 0 and 512 stay apart
    assert list(traces["validation loss"]["x"]) == list(traces["induction"]["x"]) == ["0", "512", "143,000"]
    assert history["layout"]["xaxis"]["type"] == "category" and history["layout"]["shapes"][0]["x0"] == "0"


@pytest.mark.parametrize("text, message", [
    ("step0", "give two or more revisions"),
    ("step0,main", "'main' is not a training checkpoint's revision"),
    ("step0, step0", "give two or more revisions"),
])
def test_bad_revision_lists_are_refused(text, message):
    with pytest.raises(HFImportError, match=message):
        parse_revisions(text)


def test_revisions_are_ordered_by_step_and_the_published_ones_are_known():
    assert parse_revisions(" step1000,step2 ,step143000,step0") == ["step0", "step2", "step1000", "step143000"]
    assert len(PYTHIA_STEPS) == 154 and PYTHIA_STEPS[:3] == (0, 1, 2) and PYTHIA_STEPS[-1] == 143_000


def test_revisions_of_two_shapes_are_refused_and_nothing_is_left(hub, tmp_path, tokenizer_file):  # noqa: F811
    root, _ = hub
    odd = tmp_path / "hub"
    odd.mkdir()
    (odd / "step0").symlink_to(root / "step0")
    save_random(odd / "step512", "neox sequential tanh GELU", tokenizer_file)
    with pytest.raises(HFImportError, match="step512 is a model of another shape than step0"):
        import_revisions(REPO, ["step0", "step512"], tmp_path / "runs" / "out", downloader=fake_downloader(odd))
    assert not (tmp_path / "runs" / "out").exists() and not list((tmp_path / "runs").iterdir())


def test_an_existing_run_is_never_overwritten(imported):
    folder, _ = imported
    with pytest.raises(HFImportError, match="already holds a model or a run"):
        import_revisions(REPO, REVISIONS, folder, downloader=lambda **kwargs: pytest.fail("nothing to download"))


def test_offline_it_fails_clearly_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "runs" / "pythia-14m-training"
    assert main(["import-hf", "--from", REPO, "--revisions", "step0,step1000", "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "could not download EleutherAI/pythia-14m at step0" in error and "no network, or offline mode" in error
    assert "a folder named after it (step0, step1000 ...), all in one folder" in error  # the way without a network
    assert not out.parent.exists() or not list(out.parent.iterdir())


def test_the_command_line_imports_revisions(hub, tmp_path, monkeypatch, capsys):
    root, _ = hub
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_downloader(root))
    monkeypatch.setenv("LM_RUNS_DIR", str(tmp_path / "runs"))
    assert main(["import-hf", "--from", REPO, "--revisions", "step512,step0"]) == 0
    assert "Across training" in capsys.readouterr().out
    folder = tmp_path / "runs" / "pythia-14m-training"
    assert snapshot_steps(folder) == [0, 512]
    assert "".join(json.loads((folder / "probe.json").read_text())["tokens"]) == PROBE
    with pytest.raises(SystemExit):  # argparse: one or the other
        main(["import-hf", "--from", REPO, "--revision", "step0", "--revisions", "step0,step1"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_home_imports_pythias_training_with_its_download_size_shown_first(hub, app_dirs, monkeypatch):
    root, _ = hub
    fetched = []

    def fake_snapshot_download(repo_id, revision, allow_patterns, tqdm_class):
        fetched.append((revision, allow_patterns))
        return str(root / revision)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    at = open_page("app.py")
    at.radio(key="hf_source").set_value(FROM_HUB).run()
    at.selectbox(key="hf_model").set_value("pythia-14m").run()
    at.radio(key="hf_what").set_value(TRAINING).run()
    assert at.multiselect(key="hf_revisions").value == ["step0", "step256", "step1000", "step2000", "step4000",
                                                        "step143000"]
    each = 2 * parameter_count(OPEN_MODELS["pythia-14m"].config())  # 14,067,712 weights at 16 bits
    assert {m.label: m.value for m in at.metric}["Download"] == f"≈ {6 * each / 1e9:.2f} GB"
    at.multiselect(key="hf_revisions").set_value(["step512"]).run()
    assert at.button(key="hf_import").disabled and at.button(key="hf_import").label == "Import its training"
    at.multiselect(key="hf_revisions").set_value(REVISIONS).run()
    assert {m.label: m.value for m in at.metric}["Download"] == f"≈ {3 * each / 1e9:.2f} GB"
    at.button(key="hf_import").click().run()
    assert not at.exception and not [e.value for e in at.error], [e.value for e in at.error]
    assert "**pythia-14m-training** is on disk:" in [m.value for m in at.markdown]
    assert snapshot_steps(app_dirs / "runs" / "pythia-14m-training") == [0, 512, 143_000]
    assert [revision for revision, patterns in fetched if patterns == ["*.safetensors"]] == REVISIONS


def test_a_folder_of_revision_folders_imports_without_the_network(hub, tmp_path):
    root, models = hub  # root/step0, root/step512, root/step143000: as copied from a connected machine
    folder = import_revisions(str(root), REVISIONS, tmp_path / "out")
    assert snapshot_steps(folder) == [0, 512, 143_000]
    training = load_checkpoint(folder).training
    assert training["hugging_face_repo"] is None and training["folder"] == str(root)
    with pytest.raises(HFImportError, match="has no folder step1000: a model's training is imported from a folder"):
        import_revisions(str(root), ["step0", "step1000"], tmp_path / "other")
    assert not (tmp_path / "other").exists()
    with pytest.raises(HFImportError, match="there is no folder .*not a Hugging Face model id"):
        import_revisions(str(tmp_path / "no" / "such" / "folder"), REVISIONS, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_only_uneven_snapshot_steps_are_spaced_evenly():
    pythia = [0, 256, 1000, 2000, 4000, 143_000]
    assert even_steps(pythia, pythia) == {0: "0", 256: "256", 1000: "1,000", 2000: "2,000", 4000: "4,000",
                                          143_000: "143,000"}
    assert even_steps(list(range(0, 1001, 10)), list(range(0, 1001, 100))) is None  # a run trained here: linear
    assert even_steps([0, 100, 143_000], pythia) is None  # a loss logged between snapshots needs the real distances
    assert even_steps([], [0, 143_000]) is None
