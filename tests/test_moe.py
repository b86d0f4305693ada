"""The mixture-of-experts MLP (lm.moe): one expert is the dense MLP, the router's weights and
the load-balancing loss against hand computations, and an MoE model through the rest of the
package: generation with and without the cache, the explain path, checkpoints, training."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from lm.attention import Probe
from lm.checkpoint import load_checkpoint, save_checkpoint
from lm.config import ConfigError
from lm.generate import Sampling, generate
from lm.mlp import MLP
from lm.model import GPT, GPTConfig
from lm.moe import MoE, Route, balance_loss, routing
from lm.run_folder import METRICS_FILE
from lm.sizing import active_parameter_count, flops_per_token, parameter_breakdown, parameter_count
from lm.train_config import TrainConfig
from lm.trainer import Trainer
from tests.checkpoints import shakespeare_bpe, text_and_bpe
from tests.helpers import TINY_RUN, read_jsonl

SIZES = dict(vocab_size=61, block_size=24, n_layer=2, n_head=2, n_embd=32)
MIXTRAL_LIKE = dict(position="rope", norm="rmsnorm", mlp="swiglu", mlp_hidden=40, bias=False, n_experts=4,
                    experts_top_k=2)


def build(seed: int = 0, **switches) -> GPT:
    """A random MoE model with wide weights, so that routing differs from token to token."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**SIZES | MIXTRAL_LIKE | switches)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return model


def test_one_expert_chosen_always_is_the_dense_mlp_exactly():
    config = GPTConfig(**SIZES, n_experts=1, experts_top_k=1)
    torch.manual_seed(0)
    dense, moe = MLP(config), MoE(config)  # their Linear weights start uninitialised: draw them
    for p in [*dense.parameters(), *moe.router.parameters()]:
        torch.nn.init.normal_(p, 0.0, 0.2)
    moe.experts[0].load_state_dict(dense.state_dict())
    x = torch.randn(3, 7, 32)
    assert torch.equal(moe(x), dense(x))


def test_a_one_expert_model_is_the_dense_model_exactly():
    torch.manual_seed(0)
    dense = GPT(GPTConfig(**SIZES)).eval()
    moe = GPT(GPTConfig(**SIZES, n_experts=1, experts_top_k=1)).eval()
    weights = {name.replace(".mlp.", ".mlp.experts.0."): p for name, p in dense.state_dict().items()}
    missing, unexpected = moe.load_state_dict(weights, strict=False)
    assert [name for name in missing if "router" not in name] == [] and unexpected == []
    x = torch.randint(61, (2, 20))
    assert torch.equal(moe(x).logits, dense(x).logits)


def test_top_k_weights_are_the_largest_probabilities_renormalised():
    moe = build().transformer.h[0].mlp
    route = moe.route(torch.randn(2, 9, 32))
    assert route.experts.shape == route.weights.shape == (2, 9, 2)
    torch.testing.assert_close(route.weights.sum(-1), torch.ones(2, 9))
    top = route.probs.topk(2, dim=-1)
    assert torch.equal(route.experts, top.indices)  # the k most probable, most weight first
    torch.testing.assert_close(route.weights, top.values / top.values.sum(-1, keepdim=True))
    assert (route.experts[..., 0] != route.experts[..., 1]).all()


def test_the_output_is_the_weighted_sum_of_the_chosen_experts():
    moe = build().transformer.h[1].mlp
    x = torch.randn(1, 5, 32)
    route = moe.route(x)
    expected = torch.stack([
        sum(w * moe.experts[int(e)](x[0, t]) for e, w in zip(route.experts[0, t], route.weights[0, t]))
        for t in range(5)])
    torch.testing.assert_close(moe(x)[0], expected, atol=1e-5, rtol=1e-5)


def test_top_1_weighs_by_the_probability_so_the_router_learns_from_the_loss():
    model = build(experts_top_k=1).train()
    x = torch.randint(61, (2, 16))
    route = model.transformer.h[0].mlp.route(model.embed(x))
    torch.testing.assert_close(route.weights[..., 0], route.probs.max(dim=-1).values)
    model(x, x).loss.backward()  # the language-model loss alone, no balance loss
    assert model.transformer.h[0].mlp.router.weight.grad.abs().sum() > 0


def test_balance_loss_by_hand():
    # 4 tokens, 2 experts, top-1: expert 0 chosen 3 times (f = 3/4, 1/4); mean probs P = (0.6, 0.4)
    probs = torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.6, 0.4], [0.2, 0.8]])
    route = Route(probs, probs.argmax(-1, keepdim=True), torch.ones(4, 1))
    assert balance_loss([route]).item() == pytest.approx(2 * (0.75 * 0.6 + 0.25 * 0.4))  # 1.1
    even = Route(torch.full((4, 2), 0.5), torch.tensor([[0], [1], [0], [1]]), torch.ones(4, 1))
    assert balance_loss([even]).item() == pytest.approx(1.0)  # an even load scores 1
    assert balance_loss([route, even]).item() == pytest.approx((1.1 + 1.0) / 2)  # the mean over layers
    # top-2 of 3 experts: each token's two choices count half; f = (2/4, 1/4, 1/4)
    probs3 = torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.2, 0.3]])
    top2 = Route(probs3, torch.tensor([[0, 1], [0, 2]]), torch.ones(2, 2) / 2)
    assert balance_loss([top2]).item() == pytest.approx(3 * (0.5 * 0.5 + 0.25 * 0.25 + 0.25 * 0.25))


def test_only_the_router_probabilities_carry_the_balance_gradient():
    probs = torch.tensor([[0.9, 0.1], [0.7, 0.3]], requires_grad=True)
    balance_loss([Route(probs, torch.tensor([[0], [0]]), torch.ones(2, 1))]).backward()
    # d/dP_e of 2 Σ f_e P_e with P the mean of 2 rows and f = (1, 0): 2 · 1 / 2 for expert 0, 0 for expert 1
    torch.testing.assert_close(probs.grad, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))


def test_the_model_returns_the_balance_loss_only_with_targets():
    model, x = build(), torch.randint(61, (2, 16))
    assert model(x).aux_loss is None
    out = model(x, x)
    assert 1.0 <= out.aux_loss.item() <= 4.0
    assert GPT(GPTConfig(**SIZES)).eval()(x, x).aux_loss is None  # dense: no router


def test_cached_generation_equals_uncached():
    tokenizer = shakespeare_bpe()
    model = build(vocab_size=tokenizer.vocab_size)
    settings = Sampling(temperature=0, max_new_tokens=30, stop_at_end_of_text=False)  # past the context: slides
    prompt = tokenizer.encode("To be, or not")
    cached = list(generate(model, tokenizer, prompt, settings, use_cache=True))
    uncached = list(generate(model, tokenizer, prompt, settings, use_cache=False))
    assert [s.token_id for s in cached] == [s.token_id for s in uncached] and len({s.token_id for s in cached}) > 1
    assert [s.raw_prob for s in cached] == pytest.approx([s.raw_prob for s in uncached], abs=1e-5)


def test_explain_path_equals_fused_path_and_routing_is_recorded():
    model, x = build(), torch.randint(61, (1, 20))
    routes = []
    explained = model(x, probe=Probe(explain=True, routes=routes))
    torch.testing.assert_close(explained.logits, model(x).logits, atol=1e-5, rtol=1e-5)
    assert len(routes) == 2 and routes[0].experts.shape == (1, 20, 2)
    shown = routing(model, x[0].tolist())
    assert torch.equal(shown.experts, torch.stack([r.experts[0] for r in routes]))
    torch.testing.assert_close(shown.load.sum(-1), torch.ones(2))
    assert len(set(shown.experts[:, :, 0].flatten().tolist())) > 1  # tokens go to different experts


def test_routing_refuses_a_dense_model_by_name():
    with pytest.raises(ValueError, match="dense"):
        routing(GPT(GPTConfig(**SIZES)), [1, 2, 3])


def test_checkpoint_round_trip(tmp_path):
    tokenizer = shakespeare_bpe()
    model = build(vocab_size=tokenizer.vocab_size)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "model", model, tokenizer)).model
    assert loaded.config == model.config and loaded.config.n_experts == 4
    x = torch.randint(tokenizer.vocab_size, (1, 12))
    torch.testing.assert_close(loaded(x).logits, model(x).logits)


def test_sizing_counts_every_expert_and_the_active_ones():
    config = GPTConfig(**SIZES | MIXTRAL_LIKE)
    assert parameter_count(config) == sum(p.numel() for p in GPT(config).parameters())
    one_expert = 3 * 32 * 40  # SwiGLU, no biases: gate, up and down
    assert parameter_breakdown(config)["router"] == 2 * 32 * 4
    assert parameter_count(config) - active_parameter_count(config) == 2 * (4 - 2) * one_expert
    top1 = GPTConfig(**SIZES | MIXTRAL_LIKE | dict(experts_top_k=1))
    assert flops_per_token(config) - flops_per_token(top1) == 3 * 2 * 2 * one_expert  # one more expert a layer


@pytest.mark.parametrize("switches, message", [(dict(n_experts=2, experts_top_k=3), "at most n_experts"),
                                               (dict(n_experts=-1), "n_experts"),
                                               (dict(n_experts=4, moe_aux_weight=-0.1), "moe_aux_weight")])
def test_bad_switches_are_refused_by_name(switches, message):
    with pytest.raises(ConfigError, match=message):
        GPTConfig(**SIZES | switches).validate()


def moe_run(tmp_path, text: str, **extra) -> TrainConfig:
    files = text_and_bpe(tmp_path, text[:20_000])
    return TrainConfig(**TINY_RUN | files | dict(n_experts=4, experts_top_k=2, sample_every=0, snapshot_every=0) | extra,
                       out=str(tmp_path / "run"))


def test_the_training_objective_adds_the_weighted_balance_loss(tmp_path, shakespeare_text):
    trainer = Trainer(moe_run(tmp_path, shakespeare_text, moe_aux_weight=0.5, max_steps=1))
    before, batches = copy.deepcopy(trainer.model), trainer.batches.get_state()
    objectives = []
    scale = trainer.scaler.scale
    trainer.scaler.scale = lambda loss: objectives.append(loss.detach()) or scale(loss)
    _, train_loss, _, _ = trainer._train_step()
    x, y = trainer._batch(trainer.train_ids, torch.Generator().set_state(batches))
    out = before.train()(x, y)
    assert train_loss == pytest.approx(out.loss.item(), rel=1e-5)  # what is logged: the cross-entropy
    assert objectives[0].item() == pytest.approx(out.loss.item() + 0.5 * out.aux_loss.item(), rel=1e-5)
    assert trainer.balance_loss == pytest.approx(out.aux_loss.item(), rel=1e-5)


def test_a_tiny_moe_model_trains_and_logs_its_balance_loss(tmp_path, shakespeare_text):
    cfg = moe_run(tmp_path, shakespeare_text, max_steps=30, eval_every=30, lr=3e-3)
    assert Trainer(cfg).train() == "finished"
    lines = read_jsonl(tmp_path / "run" / METRICS_FILE)
    assert lines[-1]["train_loss"] < lines[0]["train_loss"] - 0.5
    assert all(1.0 <= line["balance_loss"] <= 4.0 and math.isfinite(line["balance_loss"]) for line in lines)
    assert load_checkpoint(tmp_path / "run").model.config.n_experts == 4


def test_outside_autograd_on_two_threads_the_experts_give_the_same_numbers():
    """lm.attention.Linear's transposed products there reach the router and each expert's rows."""
    model, x = build(), torch.randint(61, (2, 20), generator=torch.Generator().manual_seed(1))
    routes = []
    reference = model(x, probe=Probe(routes=routes)).logits
    torch.set_num_threads(2)  # the one_thread fixture puts 1 back
    with torch.inference_mode():
        again = []
        torch.testing.assert_close(model(x, probe=Probe(routes=again)).logits, reference, atol=1e-5, rtol=1e-5)
    assert [torch.equal(a.experts, b.experts) for a, b in zip(again, routes)] == [True] * len(routes)
