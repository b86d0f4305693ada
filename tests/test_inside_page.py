"""The Inside the model page headless (AppTest, through app.py: its links need the navigation):
each tab's chart holds numbers computed here independently from the model's own logits, the
examples follow the model, and input patching cannot compare gets a message, not a traceback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer.inside_examples import COPY, INDIRECT_OBJECT, SHAKESPEARE
from explorer.inside_tabs.lens import induction_note
from explorer.neuron_index_build import neuron_index
from lm import attribution_patching
from lm.checkpoint import load_checkpoint, save_checkpoint
from lm.patching import activation_patching
from lm.tasks import task_tokenizer
from lm.tokenizer import TiktokenTokenizer
from tests.checkpoints import make_checkpoint, tiny_gpt
from tests.conftest import REPO
from tests.helpers import wait_for
from tests.test_attention_page import as_array, charts

PAGE = "app_pages/inside.py"


@pytest.fixture
def runs(app_dirs):
    return app_dirs / "runs"


def open_inside(tab: str = "Logit lens", **params) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page(PAGE)
    for key, value in params.items():
        at.query_params[key] = value
    at.session_state["ins_tab"] = tab
    at.run()
    assert not at.exception, at.exception
    return at


def show(at: AppTest, tab: str) -> AppTest:
    at.session_state["ins_tab"] = tab
    at.run()
    assert not at.exception, at.exception
    return at


def logits(folder, text: str) -> torch.Tensor:
    checkpoint = load_checkpoint(folder)
    with torch.no_grad():
        ids = checkpoint.tokenizer.encode(text)[-checkpoint.model.config.block_size :]  # what the page reads
        return checkpoint.model(torch.tensor([ids])).logits[0]


def infos(at: AppTest) -> list[str]:
    return [i.value for i in at.info]


def test_the_lens_last_row_and_the_attribution_are_the_models_own_numbers(runs):
    folder = make_checkpoint(runs / "tiny", sharpen=5.0)
    at = open_inside()
    text = at.text_area(key="ins_text").value
    assert text == SHAKESPEARE.clean  # a text model gets the Shakespeare example
    own = logits(folder, text)
    probs = torch.softmax(own[:, : load_checkpoint(folder).tokenizer.vocab_size], -1)
    z = as_array(charts(at)[0]["data"][0]["z"])
    np.testing.assert_allclose(z[-1], probs.max(-1).values.numpy(), rtol=1e-5)
    assert z.shape[0] == 3  # the embeddings and two blocks

    show(at, "Direct logit attribution")
    bars = charts(at)[0]["data"]
    total = sum(as_array(bar["y"]).sum() for bar in bars)
    target = int(probs[-1].argmax())
    assert at.selectbox(key="ins_target").value == target
    assert total == pytest.approx(float(own[-1, target]), abs=1e-3)
    links = [link.proto.query_string for link in at.get("page_link")]
    assert len(links) == 3 and all("att_tab=Attention+map" in q for q in links)


def gpt2_shaped(folder):
    tokenizer = TiktokenTokenizer("r50k_base")
    return make_checkpoint(folder, tokenizer=tokenizer, vocab_size=tokenizer.vocab_size, sharpen=5.0, n_layer=2)


def test_the_indirect_object_example_patches_a_gpt2_tokenizer_model(runs):
    folder = gpt2_shaped(runs / "gpt2-tiny")
    at = open_inside("Activation patching")
    assert at.selectbox(key="ins_example").value.startswith("Indirect object")
    assert at.text_area(key="ins_corrupt").value == INDIRECT_OBJECT.corrupted
    tokenizer = TiktokenTokenizer("r50k_base")
    mary, john = tokenizer.encode(" Mary")[0], tokenizer.encode(" John")[0]
    clean, corrupted = logits(folder, INDIRECT_OBJECT.clean), logits(folder, INDIRECT_OBJECT.corrupted)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Clean run: logit(·Mary) − logit(·John)"] == f"{float(clean[-1, mary] - clean[-1, john]):+.2f}"
    assert metrics["Corrupted run: the same difference"] == f"{float(corrupted[-1, mary] - corrupted[-1, john]):+.2f}"
    residual = as_array(charts(at)[0]["data"][0]["z"])
    changed = [i for i, (a, b) in enumerate(zip(tokenizer.encode(INDIRECT_OBJECT.clean),
                                                 tokenizer.encode(INDIRECT_OBJECT.corrupted))) if a != b]
    assert len(changed) == 1 and residual[0, changed[0]] == pytest.approx(1.0, abs=1e-3)
    assert (residual[:, : changed[0]] == 0).all()
    heads = as_array(charts(at)[1]["data"][0]["z"])
    assert heads.shape == (2, 2)


def test_a_model_too_big_to_patch_exactly_gets_estimates_and_its_strongest_cells_checked(runs, monkeypatch):
    monkeypatch.setattr(attribution_patching, "EXACT_BUDGET", 0.0)
    folder = gpt2_shaped(runs / "gpt2-tiny")
    at = open_inside("Activation patching")
    assert any(m.startswith("**Estimates** (attribution patching)") for m in infos(at))
    assert all("(estimates)" in chart["layout"]["title"]["text"] for chart in charts(at)[:2])
    model, tokenizer = load_checkpoint(folder).model, TiktokenTokenizer("r50k_base")
    clean, corrupted = tokenizer.encode(INDIRECT_OBJECT.clean), tokenizer.encode(INDIRECT_OBJECT.corrupted)
    answers = (tokenizer.encode(" Mary")[0], tokenizer.encode(" John")[0])
    estimate = attribution_patching.attribution_patching(model, clean, corrupted, tokenizer.vocab_size, answers)
    exact = activation_patching(model, clean, corrupted, tokenizer.vocab_size, answers)
    np.testing.assert_allclose(as_array(charts(at)[1]["data"][0]["z"]), estimate.heads, atol=1e-5)
    residual, heads = estimate.strongest(attribution_patching.CHECKED)
    checked = at.dataframe[0].value
    assert checked["cell (patched exactly)"].tolist()[attribution_patching.CHECKED:] == [f"L{layer} H{head}" for layer, head in heads]
    expected = [exact.residual[cell] for cell in residual] + [exact.heads[cell] for cell in heads]
    assert checked["exact"].tolist() == [f"{value:+.2f}" for value in expected]
    linked = sorted(((exact.heads[cell], cell) for cell in heads), reverse=True)  # the checked heads, by exact share
    assert [link.proto.label for link in at.get("page_link")] == [f"L{layer} H{head}: {share:.0%} back"
                                                                  for share, (layer, head) in linked]

    layer, head = next((layer, head) for layer in range(2) for head in range(2) if (layer, head) not in heads)
    at.multiselect(key="ins_check").select(("head", layer, head)).run()  # one more, picked by the student
    assert not at.exception, at.exception
    assert at.dataframe[0].value["exact"].tolist()[-1] == f"{exact.heads[layer, head]:+.2f}"


def test_patching_input_it_cannot_compare_gets_a_message(runs):
    make_checkpoint(runs / "tiny", sharpen=5.0)
    at = open_inside("Activation patching")
    at.text_area(key="ins_text").set_value("Hear me speak.").run()
    at.text_area(key="ins_corrupt").set_value("Hear me speak now, good citizen.").run()
    assert any("same number of tokens" in m for m in infos(at))
    long = "First Citizen:\nBefore we proceed any further, hear me "  # 42 tokens and 41, past the context of 32:
    at.text_area(key="ins_text").set_value(long + "speak").run()  # both cut to their last 32 would line up
    at.text_area(key="ins_corrupt").set_value(long + "pray").run()  # different words, and no message
    assert any("has 42 tokens and the corrupted one 41" in m for m in infos(at)) and not charts(at)
    at.text_area(key="ins_corrupt").set_value("Hear me sing.").run()
    at.text_input(key="ins_clean_answer").set_value("speak now").run()
    assert not at.exception
    assert any("is 2 tokens" in m or "tokens; name a single token" in m for m in infos(at))


def copy_model(folder):
    tokenizer = task_tokenizer()
    model = tiny_gpt(tokenizer.vocab_size, n_layer=2, n_head=2, block_size=16)
    return save_checkpoint(folder, model, tokenizer, {"config": {"data": "task:copy"}})


def test_the_examples_follow_the_model(runs):
    make_checkpoint(runs / "a-text-model")
    copy_model(runs / "copy")
    at = open_inside(ins_model="copy")
    assert at.selectbox(key="ins_example").value.startswith("Copy task")
    assert at.text_area(key="ins_text").value == COPY.clean
    at.selectbox(key="ins_model").set_value("a-text-model").run()
    assert not at.exception, at.exception
    assert at.text_area(key="ins_text").value == SHAKESPEARE.clean
    at.selectbox(key="ins_example").set_value("Shakespeare: one word changed").run()
    at.text_area(key="ins_text").set_value("Hear me speak.").run()
    show(at, "Activation patching")
    assert at.text_area(key="ins_corrupt").value == SHAKESPEARE.corrupted


def test_a_link_keeps_its_text(runs):
    copy_model(runs / "copy")
    at = open_inside(ins_model="copy", ins_text="abcdab")
    assert at.text_area(key="ins_text").value == "abcdab"
    assert len(charts(at)[0]["data"][0]["x"]) == 6


GEMMA_STYLE = dict(position="rope", norm="rmsnorm", norm_position="sandwich", qk_norm=True, mlp="geglu",
                   scale_embeddings=True, n_kv_head=1)


@pytest.mark.parametrize("layout", [dict(parallel_residual=True), GEMMA_STYLE], ids=["parallel", "gemma-style"])
def test_other_residual_layouts_are_taken_apart(runs, layout):
    folder = make_checkpoint(runs / "other", sharpen=5.0, **layout)
    at = open_inside(ins_model="other")
    assert charts(at) and not infos(at)
    show(at, "Direct logit attribution")
    assert not infos(at)
    target, own = at.selectbox(key="ins_target").value, logits(folder, at.text_area(key="ins_text").value)
    assert sum(as_array(bar["y"]).sum() for bar in charts(at)[0]["data"]) == pytest.approx(float(own[-1, target]),
                                                                                           abs=1e-3)
    sandwich = "sandwich" in str(layout)
    assert any("sandwich norms" in c.value and "1/σ = " in c.value for c in at.caption) == sandwich
    at = open_inside("Activation patching", ins_model="other", ins_text=SHAKESPEARE.clean,
                     ins_corrupt=SHAKESPEARE.clean.replace("speak", "sneak"),  # one token changed in this BPE
                     ins_clean_answer="e", ins_corrupt_answer="a")
    assert not infos(at)
    checkpoint = load_checkpoint(folder)
    clean, corrupted = (checkpoint.tokenizer.encode(at.text_area(key=key).value)[-checkpoint.model.config.block_size:]
                        for key in ("ins_text", "ins_corrupt"))  # what the page reads
    answers = tuple(checkpoint.tokenizer.encode(answer)[0] for answer in "ea")
    expected = activation_patching(checkpoint.model, clean, corrupted, checkpoint.tokenizer.vocab_size, answers)
    np.testing.assert_allclose(as_array(charts(at)[0]["data"][0]["z"]), expected.residual, atol=1e-5)
    (changed,) = expected.differ  # the one token changed: patching it in at the start restores it all
    assert expected.residual[0, changed] == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(as_array(charts(at)[1]["data"][0]["z"]), expected.heads, atol=1e-5)
    assert any("sandwich norms" in c.value for c in at.caption) == sandwich


def test_embeddings_find_a_token_and_its_nearest_neighbours(runs):
    folder = make_checkpoint(runs / "tiny")
    at = open_inside("Embeddings")
    at.text_input(key="ins_search").set_value("the").run()
    assert not at.exception, at.exception
    checkpoint = load_checkpoint(folder)
    chosen = at.selectbox(key="ins_token").value
    assert "the" in checkpoint.tokenizer.decode([chosen]).lower()
    vectors = checkpoint.model.transformer.wte.weight[: checkpoint.tokenizer.vocab_size].detach().numpy()
    cosine = vectors @ vectors[chosen] / np.linalg.norm(vectors, axis=1) / np.linalg.norm(vectors[chosen])
    cosine[chosen] = -np.inf
    assert at.dataframe[0].value["id"].tolist() == list(np.argsort(-cosine)[:10])
    at.text_input(key="ins_search").set_value("qqqqzz").run()
    assert any("No token contains" in m for m in infos(at))


def test_neurons_show_where_they_fire_in_the_corpus_sample(runs):
    """The neurons at once; the corpus passages once the background index is built (polled here:
    AppTest does not tick a run_every fragment)."""
    folder = make_checkpoint(runs / "tiny")
    at = open_inside("Neurons")
    headings = [m.value for m in at.markdown if m.value.startswith("**Layer ")]
    assert len(headings) == 6
    assert any("hidden units (128 per layer here), after its activation, GELU, tanh" in c.value for c in at.caption)
    build = neuron_index(load_checkpoint(folder))
    wait_for(lambda: build.finished)
    assert build.error is None and build.done == build.total > 0
    at.run()
    assert not at.exception, at.exception
    snippets = [h.proto.body for h in at.get("html") if "neuron-snippet" in h.proto.body]
    assert len(snippets) == 6 and all(s.count("<mark") == 3 for s in snippets)
    assert any("passages of 32 tokens from Tiny Shakespeare" in c.value for c in at.caption)
    assert not at.get("progress")


def test_the_lens_says_whether_the_answer_appears_at_the_induction_heads_block():
    rows = ("embeddings", "block 0", "block 1", "block 2")
    same = induction_note((1, 0, 0.78), 2, 2, rows)
    assert "**block 1**" in same and "layer 1 head 0 (score 0.78" in same and "readable right there" in same
    assert "1 block(s) later, after **block 2**" in induction_note((1, 0, 0.78), 2, 3, rows)
    assert "already after **block 0**, before that block" in induction_note((1, 0, 0.78), 2, 1, rows)
