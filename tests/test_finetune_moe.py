"""Fine-tuning a mixture-of-experts model: every method's step adds the load-balancing loss with
the model's own weight (checked against a hand computation from the routers' choices), and LoRA
adapts the experts but not the routers."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from lm.attention import Probe
from lm.checkpoint import load_checkpoint
from lm.data import random_batch
from lm.finetune import loop
from lm.finetune.config import FinetuneConfig
from lm.finetune.loop import FinetuneRun, recorded_routes
from lm.finetune.lora import apply_lora, count_trainable, lora_layers, lora_parameters, merge_lora
from lm.finetune.methods import step_generator
from lm.moe import balance_loss
from tests.checkpoints import make_checkpoint, tiny_gpt

MOE = dict(n_experts=4, experts_top_k=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    """A small data file for each method."""
    folder = tmp_path_factory.mktemp("data")
    (folder / "text.txt").write_text("the cat sat on the mat. " * 100, encoding="utf-8")
    rows = [("WIN a FREE prize now", "spam"), ("claim your cash: txt WIN", "spam"), ("see you at lunch", "ham"),
            ("ok I'll call you later", "ham")] * 4
    (folder / "spam.csv").write_text("text,label\n" + "".join(f"{t},{l}\n" for t, l in rows), encoding="utf-8")
    examples = [{"instruction": f"Answer {i}", "input": "", "output": "Yes, gladly.", "chosen": "Yes, gladly.",
                 "rejected": "No. Go away."} for i in range(12)]
    (folder / "prefs.jsonl").write_text("\n".join(map(json.dumps, examples)), encoding="utf-8")
    return {"continue": str(folder / "text.txt"), "classify": str(folder / "spam.csv"),
            "instruct": str(folder / "prefs.jsonl"), "dpo": str(folder / "prefs.jsonl")}


def first_step(tmp_path, data: dict, method: str, weight: float, **options) -> tuple[FinetuneRun, dict, dict]:
    """A run from a tiny MoE checkpoint whose balance weight is `weight`; its first step's logged
    extras and the gradients its optimizer stepped with (no clipping: they are the objective's)."""
    source = make_checkpoint(tmp_path / f"source-{method}-{weight}", block_size=64, moe_aux_weight=weight, **MOE)
    run = FinetuneRun(FinetuneConfig(method=method, source=str(source), out=str(tmp_path / f"run-{method}-{weight}"),
                                     data=data[method], batch_size=2, grad_clip=0.0, **options))
    grads, step = {}, run.optimizer.step

    def spy(*args, **kwargs):
        grads.update({n: p.grad.clone() for n, p in run.model.named_parameters() if p.grad is not None})
        return step(*args, **kwargs)

    run.optimizer.step = spy
    _, _, _, extras, _ = run._train_step()
    return run, extras, grads


def balance_by_hand(routes) -> torch.Tensor:
    """n_experts x sum over experts of (share of the choices) x (mean probability), averaged over layers."""
    per_layer = []
    for route in routes:
        n = route.probs.size(-1)
        share = torch.bincount(route.experts.flatten(), minlength=n).float() / route.experts.numel()
        per_layer.append(n * (share * route.probs.reshape(-1, n).mean(0)).sum())
    return torch.stack(per_layer).mean()


def test_continue_adds_the_balance_loss_with_the_models_weight(tmp_path, data):
    weight = 0.5
    _, plain_extras, plain = first_step(tmp_path, data, "continue", 0.0)
    run, extras, weighted = first_step(tmp_path, data, "continue", weight)
    # the same step by hand: the starting model on the step's windows, its routers' choices
    model = load_checkpoint(run.cfg.source).model.train()
    x, _ = random_batch(run.method.train_ids, 2, 64, step_generator(run.cfg.seed, 0))
    routes = []
    model.hidden(x, Probe(routes=routes))
    balance = balance_by_hand(routes)
    balance.backward()
    assert extras["balance_loss"] == pytest.approx(balance.item(), rel=1e-5)
    assert plain_extras["balance_loss"] == pytest.approx(balance.item(), rel=1e-5)  # logged at weight 0 too
    expected = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert any("router" in n for n in expected)
    for name, grad in weighted.items():
        torch.testing.assert_close(grad - plain[name], weight * expected.get(name, torch.zeros_like(grad)),
                                   atol=1e-6, rtol=1e-4, msg=name)
    assert weighted["transformer.h.0.mlp.router.weight"].sub(plain["transformer.h.0.mlp.router.weight"]).abs().max() > 0


@pytest.mark.parametrize("method", ["classify", "instruct", "dpo"])
def test_every_method_adds_the_balance_loss(tmp_path, data, method):
    """Its share of the gradient grows with the weight: the gradients at 0, w and 2w lie on a line."""
    grads = {}
    for weight in (0.0, 0.5, 1.0):
        _, extras, grads[weight] = first_step(tmp_path, data, method, weight)
        assert extras["balance_loss"] >= 1 - 1e-6  # 1 is an even load; never less
    router = "transformer.h.1.mlp.router.weight"
    assert (grads[0.5][router] - grads[0.0][router]).abs().max() > 1e-6
    for name, grad in grads[1.0].items():
        torch.testing.assert_close(grad - grads[0.0][name], 2 * (grads[0.5][name] - grads[0.0][name]),
                                   atol=1e-6, rtol=1e-3, msg=name)


def test_dpo_balances_the_policys_routers_only(tmp_path, data, monkeypatch):
    counted = []
    monkeypatch.setattr(loop, "balance_loss", lambda routes: counted.append(len(routes)) or balance_loss(routes))
    first_step(tmp_path, data, "dpo", 0.5)
    assert counted == [2]  # the policy's one pass (chosen and rejected together) through 2 MoE layers, not the reference's


def test_recorded_routes_are_the_models_own_and_stop_with_the_block_even_after_an_error():
    model = tiny_gpt(64, **MOE).train()
    x = torch.randint(0, 64, (2, 12))
    own = []
    with pytest.raises(RuntimeError), recorded_routes(model) as routes:
        model.hidden(x, Probe(routes=own))
        raise RuntimeError("a method failed")
    assert len(routes) == len(own) == 2
    for recorded, taken in zip(routes, own):
        assert torch.equal(recorded.experts, taken.experts) and torch.equal(recorded.probs, taken.probs)
    model(x)
    assert len(routes) == 2  # the hooks are gone


def test_a_dense_model_logs_no_balance_loss(tmp_path, data):
    source = make_checkpoint(tmp_path / "dense", block_size=64)
    run = FinetuneRun(FinetuneConfig(method="continue", source=str(source), out=str(tmp_path / "run"),
                                     data=data["continue"], batch_size=2))
    assert "balance_loss" not in run._train_step()[3]


def adapted_moe(**lora) -> torch.nn.Module:
    return apply_lora(tiny_gpt(64, **MOE), **{"rank": 2, "alpha": 4.0} | lora)


def test_lora_adapts_every_expert_and_not_the_router():
    model = adapted_moe()
    names = set(lora_layers(model))
    expected = {f"transformer.h.{layer}.attn.{m}" for layer in range(2) for m in ("c_attn", "c_proj")}
    expected |= {f"transformer.h.{layer}.mlp.experts.{e}.{m}" for layer in range(2) for e in range(4) for m in ("c_fc", "c_proj")}
    assert names == expected
    per_layer = 2 * (32 + 96) + 2 * (32 + 32) + 4 * (2 * (32 + 128) + 2 * (128 + 32))  # attention, then 4 experts
    assert count_trainable(model)[0] == sum(p.numel() for p in lora_parameters(model)) == 2 * per_layer
    assert not model.transformer.h[0].mlp.router.weight.requires_grad


@pytest.mark.parametrize("targets, chosen", [
    ("mlp.c_fc", {f"transformer.h.{layer}.mlp.experts.{e}.c_fc" for layer in range(2) for e in range(4)}),
    ("mlp.router", {f"transformer.h.{layer}.mlp.router" for layer in range(2)}),
    ("router", {f"transformer.h.{layer}.mlp.router" for layer in range(2)}),
])
def test_lora_targets_by_name_on_experts(targets, chosen):
    assert set(lora_layers(adapted_moe(targets=targets))) == chosen


def test_a_fresh_adapter_leaves_the_moe_model_unchanged_and_merges_exactly():
    base, model = tiny_gpt(64, **MOE), adapted_moe(targets="attn,mlp,mlp.router")
    x = torch.randint(0, 64, (2, 12))
    assert torch.equal(model(x).logits, base(x).logits)  # B = 0
    with torch.no_grad():
        for p in lora_parameters(model):
            p.normal_(0, 0.1)
    unmerged = model(x).logits
    assert (unmerged - base(x).logits).abs().max() > 1e-3
    merged = merge_lora(copy.deepcopy(model))
    assert not lora_layers(merged) and merged.state_dict().keys() == base.state_dict().keys()
    torch.testing.assert_close(merged(x).logits, unmerged, atol=1e-5, rtol=1e-5)


def test_only_the_adapters_of_an_moe_model_receive_gradients():
    model = adapted_moe().train()
    x = torch.randint(0, 64, (2, 12))
    output = model(x, x)
    (output.loss + output.aux_loss).backward()  # the balance loss reaches the routers' inputs, not the routers
    adapters = {id(p) for p in lora_parameters(model)}
    for name, p in model.named_parameters():
        if id(p) not in adapters:
            assert p.grad is None and not p.requires_grad, name
    graded = {n for n, p in model.named_parameters() if p.grad is not None}
    assert {n for n in graded if ".attn." in n} == {n for n, _ in model.named_parameters() if ".attn." in n and "lora_" in n}
    assert any(".experts." in n for n in graded)


def test_a_lora_run_on_an_moe_model_trains_the_adapters_only(tmp_path, data):
    run, extras, grads = first_step(tmp_path, data, "continue", 0.5, lora_rank=2)
    assert "balance_loss" in extras and all("lora_" in n for n in grads)
    assert run.trainable == sum(p.numel() for p in lora_parameters(run.model))
    assert torch.equal(run.model.transformer.h[0].mlp.router.weight,
                       load_checkpoint(run.cfg.source).model.transformer.h[0].mlp.router.weight)
