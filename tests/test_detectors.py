"""Head detectors on hand-built attention patterns whose scores are known exactly, against a
plain-loop reference on random patterns, and on a tiny random model."""

import json

import pytest
import torch
from safetensors.torch import load_file

from lm.attention import Probe
from lm.detectors import (
    DETECTORS, PROBE_LENGTH, attention_weights, duplicate_token_score, first_token_score, head_scores, induction_score,
    previous_token_score, repeated_random_tokens, self_score, snapshot,
)
from lm.model import GPT, GPTConfig
from lm.run_folder import DETECTORS_FILE, PROBE_FILE, Run, snapshot_path
from lm.tokenizer import BPETokenizer
from tests.helpers import read_jsonl

T = 8


def pattern(looks_at) -> torch.Tensor:
    """A [T, T] head where query i puts all its weight on key looks_at(i) (query 0 on itself)."""
    w = torch.zeros(T, T)
    w[0, 0] = 1.0
    for i in range(1, T):
        w[i, looks_at(i)] = 1.0
    return w


def uniform(n: int = T) -> torch.Tensor:
    """Query i spreads evenly over keys 0…i."""
    return torch.ones(n, n).tril() / torch.arange(1, n + 1)[:, None]


def scores(head: torch.Tensor, ids=None) -> dict[str, float]:
    """Every detector on one head given as [T, T]."""
    ids = list(range(head.shape[-1])) if ids is None else ids
    w = head[None, None]
    return {
        "previous_token": previous_token_score(w).item(),
        "duplicate_token": duplicate_token_score(w, ids).item(),
        "induction": induction_score(w, ids).item(),
        "first_token": first_token_score(w).item(),
        "self": self_score(w).item(),
    }


def test_detectors_are_described_in_order():
    assert list(DETECTORS) == ["previous_token", "duplicate_token", "induction", "first_token", "self"]
    assert all(description.strip() for description in DETECTORS.values())


def test_pure_heads_score_one_on_their_own_detector():
    previous = scores(pattern(lambda i: i - 1))
    assert previous["previous_token"] == 1.0 and previous["self"] == 0.0
    assert previous["first_token"] == pytest.approx(1 / (T - 1))  # only query 1's previous token is the first
    itself = scores(pattern(lambda i: i))
    assert itself == {"previous_token": 0.0, "duplicate_token": 0.0, "induction": 0.0, "first_token": 0.0, "self": 1.0}
    sink = scores(pattern(lambda i: 0))
    assert sink["first_token"] == 1.0 and sink["self"] == 0.0
    assert sink["previous_token"] == pytest.approx(1 / (T - 1))


def test_uniform_attention_gives_known_fractions():
    expected = sum(1 / (i + 1) for i in range(1, T)) / (T - 1)  # query i gives 1/(i+1) to each key
    got = scores(uniform())
    assert got["previous_token"] == pytest.approx(expected)
    assert got["first_token"] == pytest.approx(expected)
    assert got["self"] == pytest.approx(expected)
    ids = [7, 3, 7, 3, 7, 1, 1, 9]  # earlier copies: query 2 has 1, 3 has 1, 4 has 2, 6 has 1
    assert scores(uniform(), ids)["duplicate_token"] == pytest.approx((1 / 3 + 1 / 4 + 2 / 5 + 1 / 7) / 4)


def test_induction_and_duplicate_heads_on_a_repeated_sequence():
    ids = [10, 11, 12, 13, 10, 11, 12, 13]  # the second half repeats the first
    induction = scores(pattern(lambda i: i - 3 if i >= 4 else i), ids)  # looks at what followed its last copy
    assert induction["induction"] == 1.0 and induction["duplicate_token"] == 0.0
    duplicate = scores(pattern(lambda i: i - 4 if i >= 4 else i), ids)  # looks at its earlier copy
    assert duplicate["duplicate_token"] == 1.0 and duplicate["induction"] == 0.0
    assert scores(uniform(), ids)["induction"] == pytest.approx(sum(1 / (i + 1) for i in range(4, 8)) / 4)


def test_a_token_right_after_its_copy_is_not_induction():
    """In 5 5 5, query 1's earlier copy is followed by query 1 itself: that is self-attention,
    so only query 2 (looking back at key 1) is asked about induction."""
    ids = [5, 5, 5]
    itself = torch.eye(3)[None, None]
    assert induction_score(itself, ids).item() == 0.0
    back = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 1, 0]])[None, None]
    assert induction_score(back, ids).item() == 1.0


def test_no_question_to_ask_scores_zero():
    w = uniform()[None, None]
    distinct = list(range(T))
    assert duplicate_token_score(w, distinct).item() == 0.0
    assert induction_score(w, distinct).item() == 0.0
    one = torch.ones(1, 1, 1, 1)
    assert previous_token_score(one).item() == 0.0 and self_score(one).item() == 0.0


def reference(w: torch.Tensor, ids: list[int]) -> dict[str, float]:
    """The definitions written as loops over queries and keys."""
    n = len(ids)

    def mean(values):
        return sum(values) / len(values) if values else 0.0

    duplicate, induction = [], []
    for i in range(1, n):
        copies = [j for j in range(i) if ids[j] == ids[i]]
        if copies:
            duplicate.append(sum(w[i, j].item() for j in copies))
        after = {j + 1 for j in copies if j + 1 < i}
        if after:
            induction.append(sum(w[i, k].item() for k in after))
    return {
        "previous_token": mean([w[i, i - 1].item() for i in range(1, n)]),
        "duplicate_token": mean(duplicate),
        "induction": mean(induction),
        "first_token": mean([w[i, 0].item() for i in range(1, n)]),
        "self": mean([w[i, i].item() for i in range(1, n)]),
    }


def test_random_patterns_match_the_loop_reference():
    generator = torch.Generator().manual_seed(1)
    n = 12
    logits = torch.randn(2, 3, n, n, generator=generator) * 3
    w = logits.masked_fill(torch.ones(n, n).triu(1).bool(), float("-inf")).softmax(-1)
    ids = torch.randint(4, (n,), generator=generator).tolist()  # a small vocabulary: many repeats
    got = {
        "previous_token": previous_token_score(w), "duplicate_token": duplicate_token_score(w, ids),
        "induction": induction_score(w, ids), "first_token": first_token_score(w), "self": self_score(w),
    }
    for layer in range(2):
        for head in range(3):
            expected = reference(w[layer, head], ids)
            for name in DETECTORS:
                assert got[name][layer, head].item() == pytest.approx(expected[name], abs=1e-6), (name, layer, head)


def test_repeated_random_tokens():
    probe = repeated_random_tokens(100, 20, seed=3)
    assert len(probe) == 40 and probe[:20] == probe[20:]
    assert len(set(probe[:20])) == 20 and all(0 <= t < 100 for t in probe)
    assert probe == repeated_random_tokens(100, 20, seed=3) != repeated_random_tokens(100, 20, seed=4)
    small = repeated_random_tokens(5, 12)  # longer than the vocabulary: repeats are unavoidable
    assert small[:12] == small[12:] and all(0 <= t < 5 for t in small)
    letters = list(range(97, 123))  # a task's alphabet
    drawn = repeated_random_tokens(letters, 10, seed=1)
    assert set(drawn) <= set(letters) and len(set(drawn[:10])) == 10


def test_head_scores_on_a_tiny_model():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=3, n_embd=24))
    model.train()
    ids = list(range(20)) + [3, 4, 3]  # longer than the context: the last 16 are read
    result = head_scores(model, ids, seed=0)
    assert model.training  # the mode is given back
    assert list(result) == list(DETECTORS)
    for name, score in result.items():
        assert score.shape == (2, 3) and score.device.type == "cpu" and score.dtype == torch.float32
        assert ((score >= 0) & (score <= 1)).all(), name
    with torch.no_grad():
        model.eval()
        last = torch.tensor([ids[-16:]])
        weights = torch.stack([s.weights[0] for s in model(last, probe=Probe(explain=True)).attention])
    assert torch.allclose(result["previous_token"], previous_token_score(weights))
    assert torch.allclose(result["duplicate_token"], duplicate_token_score(weights, ids[-16:]))
    assert PROBE_LENGTH > 8  # so the probe here was cut to half the context
    probe_ids = repeated_random_tokens(50, 8, seed=0)
    with torch.no_grad():
        steps = model(torch.tensor([probe_ids]), probe=Probe(explain=True)).attention
    probe_weights = torch.stack([s.weights[0] for s in steps])
    assert torch.allclose(result["induction"], induction_score(probe_weights, probe_ids))
    with pytest.raises(ValueError):
        head_scores(model, [])


def test_a_snapshot_writes_the_attention_and_the_scores_of_one_pass(tmp_path):
    """lm.detectors.snapshot, as training and an imported training call it: the attention it stores
    is the one its scores were measured on (handed to head_scores, not computed again)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=3, n_embd=24)).eval()
    ids = [5, 6, 7, 5, 6, 7, 8]
    run = Run(tmp_path)
    snapshot(run, 30, model, ids, BPETokenizer([]), vocabulary=list(range(10)))
    stored = load_file(snapshot_path(tmp_path, 30))["attention"]
    assert stored.dtype == torch.float16 and stored.shape == (2, 3, 7, 7)
    assert torch.allclose(stored.float(), attention_weights(model, ids), atol=1e-3)
    [line] = read_jsonl(tmp_path / DETECTORS_FILE)
    expected = head_scores(model, ids, vocabulary=list(range(10)))
    assert line["step"] == 30 and line["scores"] == {k: v.tolist() for k, v in expected.items()}
    assert json.loads((tmp_path / PROBE_FILE).read_text())["ids"] == ids
