"""Reading the residual stream in the vocabulary's terms.

The logit lens stops the model after each layer: the residual stream at that point goes
through the final norm and the head as if no block came after, and gives a next-token
guess per position. Direct logit attribution splits one logit into what each part wrote:
the final norm is a LayerNorm, (x − mean) / σ · γ + β, linear in x once σ (the spread of
the final residual at that position) is frozen at its value; so each part's direct effect
is (part − its mean) / σ · γ · W[target], and the parts plus β · W[target] add up to the
logit exactly. "Direct": a head's effect through later layers is not counted here (that is
what activation patching measures)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from lm.attention import Probe
from lm.model import GPT
from lm.trace import UnsupportedArchitecture, check_close, embed, head_writes, projection_bias, trace

TOP = 5  # guesses kept per cell of the lens


@dataclass(frozen=True)
class LogitLens:
    """Row r, position t: the guess after row r's layer (row 0: the embeddings alone)."""

    rows: tuple[str, ...]
    top_ids: np.ndarray  # [rows, T, TOP]
    top_probs: np.ndarray  # [rows, T, TOP]
    final_ids: np.ndarray  # [T]: the model's own next-token prediction at each position
    final_probs: np.ndarray  # [rows, T]: each row's probability of that prediction

    def settles_at(self) -> np.ndarray:
        """[T]: the first row from which the top guess is the final prediction in every later row."""
        agrees = self.top_ids[:, :, 0] == self.final_ids[None, :]
        from_here_on = np.flip(np.cumprod(np.flip(agrees, 0), 0), 0).astype(bool)  # row r: rows r… all agree
        return from_here_on.argmax(0)  # the last row is the model's own: it always agrees


@torch.inference_mode()
def logit_lens(model: GPT, ids: list[int], n_tokens: int) -> LogitLens:
    """The lens over the embeddings and after every block, on the tokenizer's `n_tokens` ids."""
    idx = torch.tensor([ids], device=model.lm_head.weight.device)
    own = model(idx, probe=Probe(residuals=True))
    embeddings = embed(model, idx)
    check_close(model.transformer.h[0](embeddings)[0], own.residuals[0],
                "this model's embeddings are not GPT-2's (token plus position): not supported for this architecture yet")
    stream = torch.cat([embeddings, *own.residuals])  # [rows, T, n_embd]
    probs = torch.softmax(model.lm_head(model.transformer.ln_f(stream))[..., :n_tokens].float(), dim=-1)
    top = probs.topk(min(TOP, n_tokens), dim=-1)
    final = own.logits[0, :, :n_tokens].argmax(-1)
    chosen = probs.gather(-1, final.view(1, -1, 1).expand(len(stream), -1, 1))[..., 0]
    rows = ("embeddings", *(f"block {number}" for number in range(len(own.residuals))))
    return LogitLens(rows, top.indices.cpu().numpy(), top.values.cpu().numpy(), final.cpu().numpy(),
                     chosen.cpu().numpy())


@dataclass(frozen=True)
class Attribution:
    """Each part's direct push on one logit at one position, in the model's order."""

    labels: tuple[str, ...]
    kinds: tuple[str, ...]  # "embeddings", "head", "attention bias", "MLP", "final norm bias"
    heads: tuple[tuple[int, int] | None, ...]  # (layer, head) for a head, else None
    values: np.ndarray  # [parts]: they sum to `logit`
    logit: float  # the model's own logit for the target
    inverse_spread: float  # 1 / σ: the final norm's scale, frozen

    def top_heads(self, count: int) -> list[tuple[int, int, float]]:
        """The heads that push the logit most, either way: (layer, head, value), largest |value| first."""
        found = [(*where, float(value)) for where, value in zip(self.heads, self.values) if where is not None]
        return sorted(found, key=lambda item: -abs(item[2]))[:count]


def final_norm_terms(model: GPT, x: torch.Tensor, target: int) -> tuple[bool, torch.Tensor, float, float]:
    """The final norm linearised at x [n_embd]: (whether it centres, the direction γ·W[target]
    a part is read along, 1/σ, and the constant the norm's β and the head's bias add)."""
    norm, head = model.transformer.ln_f, model.lm_head
    row = head.weight[target]
    if isinstance(norm, nn.LayerNorm):
        centre, spread = True, (x.var(unbiased=False) + norm.eps).rsqrt()
    elif isinstance(norm, nn.RMSNorm):
        eps = norm.eps if norm.eps is not None else torch.finfo(x.dtype).eps
        centre, spread = False, (x.pow(2).mean() + eps).rsqrt()
    else:
        raise UnsupportedArchitecture(f"the final norm is a {type(norm).__name__}: attribution is not supported yet")
    gamma = norm.weight if norm.weight is not None else torch.ones_like(x)
    constant = (norm.bias @ row if getattr(norm, "bias", None) is not None else 0.0)
    constant = constant + (head.bias[target] if head.bias is not None else 0.0)
    return centre, gamma * row, float(spread), float(constant)


@torch.inference_mode()
def direct_attribution(model: GPT, ids: list[int], position: int, target: int) -> Attribution:
    """How much each part of the residual stream at `position` pushes the logit of `target`."""
    parts = trace(model, ids)
    final = parts.layers[-1].resid_post[0, position]
    centre, direction, inverse_spread, constant = final_norm_terms(model, final, target)
    labels, kinds, heads, vectors = ["embeddings"], ["embeddings"], [None], [parts.embeddings[0, position]]
    for layer, (block, step) in enumerate(zip(model.transformer.h, parts.layers)):
        writes = head_writes(block, step.heads)[:, 0, position]  # [heads, n_embd]
        bias = projection_bias(block)
        check_close(writes.sum(0) + (bias if bias is not None else 0), step.attn_out[0, position],
                    "this model's attention output is not a sum of its heads: not supported for this architecture yet")
        for head, write in enumerate(writes):
            labels.append(f"L{layer} H{head}"), kinds.append("head"), heads.append((layer, head)), vectors.append(write)
        if bias is not None:
            labels.append(f"L{layer} attn bias"), kinds.append("attention bias"), heads.append(None), vectors.append(bias)
        labels.append(f"L{layer} MLP"), kinds.append("MLP"), heads.append(None), vectors.append(step.mlp_out[0, position])
    stacked = torch.stack(vectors)
    if centre:
        stacked = stacked - stacked.mean(-1, keepdim=True)
    values = (stacked @ direction * inverse_spread).float().cpu().numpy()
    labels.append("final norm bias"), kinds.append("final norm bias"), heads.append(None)
    values = np.append(values, constant)
    logit = float(parts.logits(model, position)[target])
    return Attribution(tuple(labels), tuple(kinds), tuple(heads), values, logit, inverse_spread)
