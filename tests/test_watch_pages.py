"""Watching a model learn, headless (AppTest): the head-detector heatmap, the across-training
slider, ablation and the one-token-at-a-time generator, each checked against lm computed here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from explorer.generate_stepwise import step_seed
from lm.attention import Probe
from lm.checkpoint import load_checkpoint
from lm.detectors import head_scores
from lm.generate import Sampling, generate
from tests.checkpoints import make_checkpoint, write_snapshots
from tests.conftest import open_page
from tests.test_attention_page import TEXT, as_array, attention, charts, heatmap, show_tab

ATTENTION, GENERATE = "app_pages/attention.py", "app_pages/generate.py"


@pytest.fixture
def runs(app_dirs):
    return app_dirs / "runs"


def attention_page(text: str = TEXT):
    at = open_page(ATTENTION)
    at.text_area(key="att_text").set_value(text).run()
    assert not at.exception, at.exception
    return at


def text_ids(folder, text: str = TEXT) -> list[int]:
    checkpoint = load_checkpoint(folder)
    return checkpoint.tokenizer.encode(text)[-checkpoint.model.config.block_size :]


def test_detector_heatmap_holds_head_scores_and_opens_a_head(runs):
    folder = make_checkpoint(runs / "tiny", n_head=3, n_embd=24)
    expected = head_scores(load_checkpoint(folder).model, text_ids(folder))
    at = show_tab(attention_page(), "Head detectors")
    np.testing.assert_allclose(heatmap(at), expected["previous_token"].numpy(), atol=1e-6)
    assert charts(at)[0]["layout"]["title"]["text"] == "tiny: previous token score"

    at.segmented_control(key="att_detector").set_value("induction").run()
    np.testing.assert_allclose(heatmap(at), expected["induction"].numpy(), atol=1e-6)
    layer, head = divmod(int(expected["induction"].argmax()), 3)
    at.button(key=f"att_open_tiny_{layer}_{head}").click().run()  # the best head opens in the Attention map
    assert not at.exception, at.exception
    assert at.session_state["att_tab"] == "Attention map"
    assert (at.segmented_control(key="att_layer").value, at.segmented_control(key="att_head").value) == (layer, head)
    np.testing.assert_allclose(heatmap(at), attention(folder, TEXT, layer, head), atol=1e-6)


def test_across_training_slider_replays_the_snapshots(runs):
    folder = make_checkpoint(runs / "run")
    snapshots = write_snapshots(folder, steps=(0, 50, 100))
    at = show_tab(attention_page(), "Across training")
    slider = at.select_slider(key="att_train_step_run")
    assert slider.options == ["0", "50", "100"] and slider.value == 100  # the end of training first
    head_map, history = charts(at)
    np.testing.assert_allclose(as_array(head_map["data"][0]["z"]), snapshots[-1][0, 0].half().float(), atol=1e-6)
    assert [shape["x0"] for shape in history["layout"]["shapes"]] == [100, 100]  # the step, on both charts

    slider.set_value(0).run()
    assert not at.exception, at.exception
    head_map, history = charts(at)
    z = as_array(head_map["data"][0]["z"])
    np.testing.assert_allclose(z, snapshots[0][0, 0].half().float(), atol=1e-6)
    assert np.abs(z - snapshots[-1][0, 0].numpy()).max() > 0.5  # the head has not learned its job yet
    assert head_map["layout"]["title"]["text"] == "layer 0, head 0 at step 0"
    assert [shape["x0"] for shape in history["layout"]["shapes"]] == [0, 0]
    traces = {trace["name"]: trace for trace in history["data"]}
    assert list(traces["training loss"]["y"]) == [5.0, 3.5, 2.0]
    previous = as_array(traces["previous token"]["y"])
    assert previous[-1] == pytest.approx(1.0) and previous[0] < 0.5  # it becomes a previous-token head
    assert any("previous token 0.25" in c.value for c in at.caption)  # query i gives 1/(i+1) to the token before: mean 0.25

    at.segmented_control(key="att_head").set_value(1).run()  # a head that never learns anything
    head_map, history = charts(at)
    np.testing.assert_allclose(as_array(head_map["data"][0]["z"]), snapshots[0][0, 1].half().float(), atol=1e-6)
    assert np.ptp(as_array({t["name"]: t for t in history["data"]}["previous token"]["y"])) < 1e-6


def test_across_training_without_snapshots_says_how_to_get_them(runs):
    folder = make_checkpoint(runs / "plain")
    at = show_tab(attention_page(), "Across training")
    assert "has no attention snapshots" in at.info[0].value and "Train" in at.info[0].value
    assert not charts(at)

    write_snapshots(folder, steps=(0, 10))
    (folder / "attention" / "step_0000010.safetensors").write_bytes(b"not a snapshot")
    at.run()
    assert not at.exception, at.exception
    assert "step_0000010.safetensors cannot be read" in at.error[0].value.replace("\\", "")  # markdown-escaped


def test_ablation_changes_the_loss_and_the_next_token(runs):
    folder = make_checkpoint(runs / "tiny", seed=3, n_layer=2, n_head=2)
    model = load_checkpoint(folder).model
    idx = torch.tensor([text_ids(folder)])

    def losses(mask=None):
        with torch.no_grad():
            logits = model(idx, probe=Probe(head_mask=mask)).logits[0]
        return F.cross_entropy(logits[:-1], idx[0, 1:], reduction="none").numpy(), logits[-1].softmax(-1).numpy()

    at = show_tab(attention_page(), "Ablation")
    before, next_before = losses()
    assert at.metric[0].value == at.metric[1].value == f"{before.mean():.3f}"
    mask = torch.ones(2, 2)
    mask[0] = 0.0  # layer 0 off
    mask[1, 1] = 0.0
    at.pills(key="att_abl_layers").set_value([0]).run()
    at.pills(key="att_abl_heads_1").set_value([1]).run()
    assert not at.exception, at.exception
    after, next_after = losses(mask)
    assert at.metric[1].value == f"{after.mean():.3f}" and at.metric[2].value == "3 of 4"
    change, bars = charts(at)
    np.testing.assert_allclose(as_array(change["data"][0]["y"]), after - before, atol=1e-5)
    assert np.abs(after - before).max() > 1e-4
    top = np.argsort(-np.maximum(next_before, next_after))[:8]
    np.testing.assert_allclose(as_array(bars["data"][0]["x"]), next_before[top], atol=1e-6)
    np.testing.assert_allclose(as_array(bars["data"][1]["x"]), next_after[top], atol=1e-6)

    at.button(key="att_abl_reset").click().run()
    assert at.metric[1].value == f"{before.mean():.3f}" and at.metric[2].value == "0 of 4"
    show_tab(at, "Attention map")  # the shared model was never changed
    np.testing.assert_allclose(heatmap(at), attention(folder, TEXT, 0, 0), atol=1e-6)


def test_stepper_draws_one_token_per_press(runs):
    folder = make_checkpoint(runs / "tiny")
    checkpoint = load_checkpoint(folder)
    at = open_page(GENERATE)
    at.toggle(key="gen_stepwise").set_value(True).run()
    assert at.session_state["gen_stepper"].steps == [] and "Next token" in at.info[0].value

    for _ in range(2):
        at.button(key="gen_next").click().run()
    assert not at.exception, at.exception
    stepper = at.session_state["gen_stepper"]
    ids = checkpoint.tokenizer.encode("ROMEO:")
    for n in range(2):  # each press is one draw of lm.generate with the page's default settings
        settings = Sampling(temperature=0.8, top_k=50, max_new_tokens=1, seed=step_seed(0, n), stop_at_end_of_text=False)
        ids.append(next(generate(checkpoint.model, checkpoint.tokenizer, ids, settings)).token_id)
    assert stepper.ids == ids

    bars, rows = charts(at)
    assert bars["layout"]["title"]["text"].startswith("Token 2:")
    with torch.no_grad():
        looked = checkpoint.model(torch.tensor([ids[:-1]]), probe=Probe(explain=True)).attention
    expected = np.stack([steps.weights[0, :, -1].mean(0).numpy() for steps in looked])
    np.testing.assert_allclose(as_array(rows["data"][0]["z"]), expected, atol=1e-6)  # a row per layer
    at.toggle(key="gen_step_heads").set_value(True).run()
    assert as_array(charts(at)[1]["data"][0]["z"]).shape == (2 * 2, len(ids) - 1)  # a row per head

    at.button(key="gen_restart").click().run()
    assert at.session_state["gen_stepper"].steps == []
    at.button(key="gen_next").click().run()
    assert at.session_state["gen_stepper"].ids == ids[:-1]  # the same seed draws the same token again
