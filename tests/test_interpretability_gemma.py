"""Inside the model on a Gemma 3 imported from transformers (random weights, every (1 + w) norm
scale perturbed, heads of 12 dimensions in a width of 40, an attention scale of its own, windowed
layers): direct attribution and patching one head against hooks on a copy of the model, as
tests.test_interpretability checks them on models built here."""

from __future__ import annotations

import pytest

from lm.checkpoint import load_checkpoint
from lm.hf_import import import_hf
from lm.lens import direct_attribution
from lm.patching import activation_patching
from tests import test_interpretability as reference
from tests.test_hf_import import hub_offline, tokenizer_file  # noqa: F401  (fixtures)

pytest.importorskip("transformers")
from tests.test_hf_import_gemma import PROMPT, save_random_gemma  # noqa: E402  (needs transformers)


def test_an_imported_gemma_is_attributed_and_patched_as_hooks_find(tmp_path, tokenizer_file, monkeypatch):  # noqa: F811
    save_random_gemma(tmp_path / "model", "tied GQA, pattern 3", tokenizer_file)
    checkpoint = load_checkpoint(import_hf(str(tmp_path / "model"), tmp_path / "ours"))
    model, ids = checkpoint.model, checkpoint.tokenizer.encode(PROMPT)[:12]
    assert model.config.head_dim * model.config.n_head != model.config.n_embd and model.config.window < len(ids)
    found = direct_attribution(model, ids, 11, 7)
    assert found.values.sum() == pytest.approx(float(reference.own_logits(model, ids)[11, 7]), abs=1e-5)
    assert found.frozen_norms == 1 + 2 * model.config.n_layer
    by_label = dict(zip(found.labels, found.values))
    for label, value in reference.reference_attribution(model, ids, 11, 7).items():
        assert by_label[label] == pytest.approx(value, abs=1e-5), label

    corrupted = [*ids[:5], (ids[5] + 1) % checkpoint.tokenizer.vocab_size, *ids[6:]]
    monkeypatch.setattr(reference, "CLEAN", ids)  # the prompts patched_by_hooks runs
    monkeypatch.setattr(reference, "CORRUPTED", corrupted)
    moved = reference.own_logits(model, ids)[-1] - reference.own_logits(model, corrupted)[-1]
    answers = (int(moved.argmax()), int(moved.argmin()))
    patched = activation_patching(model, ids, corrupted, checkpoint.tokenizer.vocab_size, answers)
    for layer, head in [(0, 3), (2, 1), (3, 0)]:
        logits = reference.patched_by_hooks(model, layer, head)[-1]
        share = (float(logits[answers[0]] - logits[answers[1]]) - patched.corrupted_difference) / (
            patched.clean_difference - patched.corrupted_difference)
        assert patched.heads[layer, head] == pytest.approx(share, abs=1e-4)
    assert patched.residual[0, 5] == pytest.approx(1.0, abs=1e-4)
