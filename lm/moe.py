"""A mixture-of-experts MLP: several MLPs (experts), and a router that sends each token to a few.

A dense block runs every token through its one MLP. Here the MLP is n_experts copies of it
(each with its own weights), and a router, one linear layer, scores every expert for each
token; a softmax turns the scores into probabilities, the token goes through the top k
experts only, and their outputs are mixed by those k probabilities renormalised to sum to 1
(Mixtral's convention; Qwen3-MoE's norm_topk_prob). With k = 1 the output is scaled by the
chosen expert's probability itself, as the Switch Transformer does: renormalised, it would
always be 1, and the router would learn nothing from the loss. So the model holds n_experts
MLPs of parameters but each token pays for k of them: more knowledge for the same compute.

Left alone, a router learns to favour a few experts (they train more, so they win more).
The Switch Transformer's load-balancing loss, added to the training loss with a small
weight, pushes the share of tokens each expert gets and the router's mean probability for
it towards 1/n_experts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from lm.attention import Probe
from lm.config import GPTConfig
from lm.mlp import MLP

if TYPE_CHECKING:
    from lm.model import GPT


@dataclass(frozen=True)
class Route:
    """One MoE layer's choices for a batch: probs [batch, T, n_experts] (the router's softmax
    over every expert); experts and weights [batch, T, k], the chosen ones, most weight first,
    and their mixing weights, which sum to 1 (with k = 1: the expert's probability)."""

    probs: torch.Tensor
    experts: torch.Tensor
    weights: torch.Tensor


class MoE(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.top_k = config.experts_top_k
        self.router = nn.Linear(config.n_embd, config.n_experts, bias=False)
        self.experts = nn.ModuleList(MLP(config) for _ in range(config.n_experts))

    def route(self, x: torch.Tensor) -> Route:
        """Which experts each token of x [batch, T, n_embd] goes to, and with what weights."""
        probs = F.softmax(self.router(x).float(), dim=-1)  # in fp32, as Mixtral
        top, experts = probs.topk(self.top_k, dim=-1)
        return Route(probs, experts, top / top.sum(dim=-1, keepdim=True) if self.top_k > 1 else top)

    def forward(self, x: torch.Tensor, probe: Probe = Probe()) -> torch.Tensor:
        route = self.route(x)
        if probe.routes is not None:  # the load-balancing loss, or the app, reads the choices
            probe.routes.append(route)
        flat = x.reshape(-1, x.size(-1))
        experts, weights = route.experts.reshape(-1, self.top_k), route.weights.reshape(-1, self.top_k).to(x.dtype)
        out = torch.zeros_like(flat)
        for number, expert in enumerate(self.experts):
            token, slot = torch.where(experts == number)  # the tokens that chose it, and in which of their k places
            if token.numel():
                out.index_add_(0, token, expert(flat[token]) * weights[token, slot, None])
        return out.view_as(x)


def expert_load(routes: list[Route]) -> torch.Tensor:
    """[layers, n_experts]: the share of each layer's choices that went to each expert (rows sum to 1)."""
    return torch.stack([F.one_hot(r.experts.reshape(-1), r.probs.size(-1)).float().mean(dim=0) for r in routes])


def balance_loss(routes: list[Route]) -> torch.Tensor:
    """The Switch Transformer's load-balancing loss, n_experts × Σ_e f_e × P_e, where f_e is
    the share of the tokens' choices that went to expert e (expert_load) and P_e the router's
    mean probability for it; averaged over the layers. It is 1 when the load is even (f = P =
    1/n_experts) and n_experts when one expert takes everything. Only P carries a gradient: it
    lowers the probability of the busiest experts. (transformers' Mixtral counts f per token,
    summing to k, so its value is k times this one, and pools its layers before the product.)"""
    n = routes[0].probs.size(-1)
    mean_probs = torch.stack([route.probs.reshape(-1, n).mean(dim=0) for route in routes])
    return n * (expert_load(routes) * mean_probs).sum(dim=-1).mean()


@dataclass(frozen=True)
class Routing:
    """Where a mixture-of-experts model sent each token of one text, for the app to show."""

    experts: torch.Tensor  # [layers, T, k]: the experts each token went through, most weight first
    weights: torch.Tensor  # [layers, T, k]: their mixing weights (each row sums to 1; k = 1: the probability)
    load: torch.Tensor  # [layers, n_experts]: the share of each layer's choices that each expert got


@torch.inference_mode()
def routing(model: GPT, ids: list[int]) -> Routing:
    """The routers' choices on `ids` (1 to block_size of them), recorded by the model's own pass.
    Only reads the model (it is shared between sessions); a dense model has none to show."""
    if not model.config.n_experts:
        raise ValueError("this model is dense: every token goes through its one MLP, there is no router")
    if not 0 < len(ids) <= model.config.block_size:
        raise ValueError(f"need 1 to {model.config.block_size} tokens, got {len(ids)}")
    routes: list[Route] = []
    model.hidden(torch.tensor([ids], device=model.lm_head.weight.device), Probe(routes=routes))
    return Routing(torch.stack([r.experts[0] for r in routes]).cpu(),
                   torch.stack([r.weights[0] for r in routes]).float().cpu(), expert_load(routes).cpu())
