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

import weakref
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lm.attention import Probe
from lm.device import cpu_bf16_feature
from lm.model import GPT
from lm.trace import UnsupportedArchitecture, check_close, embed, head_writes, projection_bias, trace

TOP = 5  # guesses kept per cell of the lens
CANDIDATES = 32  # a bf16 lens's likeliest guesses per cell, recomputed in fp32
FAST_FROM = 5e9  # multiply-adds of the lens's head from which bf16 pays (GPT-2 small, 64 tokens: 3.2e10)


@dataclass(frozen=True)
class LogitLens:
    """Row r, position t: the guess after row r's layer (row 0: the embeddings alone)."""

    rows: tuple[str, ...]
    top_ids: np.ndarray  # [rows, T, TOP]
    top_probs: np.ndarray  # [rows, T, TOP]
    final_ids: np.ndarray  # [T]: the model's own next-token prediction at each position
    final_probs: np.ndarray  # [rows, T]: each row's probability of that prediction
    fast: bool = False  # rows before the last read through a bf16 head (see read_vocabulary)

    def settles_at(self) -> np.ndarray:
        """[T]: the first row from which the top guess is the final prediction in every later row."""
        agrees = self.top_ids[:, :, 0] == self.final_ids[None, :]
        from_here_on = np.flip(np.cumprod(np.flip(agrees, 0), 0), 0).astype(bool)  # row r: rows r… all agree
        return from_here_on.argmax(0)  # the last row is the model's own: it always agrees


def fast_head_pays(model: GPT, n_tokens: int, cells: int) -> bool:
    """Whether the lens's head goes through bf16: on a CPU that multiplies bf16 natively
    (about 4× fp32 there), for a head big enough to matter (GPT-2's: 50,257 × 768)."""
    on_cpu = model.lm_head.weight.device.type == "cpu"
    return on_cpu and cells * n_tokens * model.config.n_embd > FAST_FROM and cpu_bf16_feature() is not None


_CENTRED: weakref.WeakKeyDictionary[GPT, tuple[int, torch.Tensor, torch.Tensor]] = weakref.WeakKeyDictionary()


def centred_head(model: GPT, n_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's mean row [n_embd], and its rows minus that mean [n_tokens, n_embd] in bf16, kept per
    model (the weights never change in place). Subtracting the mean row shifts every logit of a
    position by the same amount, which the softmax ignores, and keeps the bf16-rounded logits
    small, so their rounding is too."""
    kept = _CENTRED.get(model)
    if kept is None or kept[0] != n_tokens:
        weight = model.lm_head.weight[:n_tokens].float()
        mean = weight.mean(0)
        kept = _CENTRED[model] = (n_tokens, mean, (weight - mean).bfloat16())
    return kept[1], kept[2]


def head_logits(model: GPT, normed: torch.Tensor, n_tokens: int, fast: bool) -> torch.Tensor:
    """[T, n_tokens] fp32 logits of rows of the final norm's output [T, n_embd]; `fast`: from a bf16
    matrix multiply, each row less normed · the head's mean row (see centred_head)."""
    head = model.lm_head
    bias = head.bias[:n_tokens] if head.bias is not None else None
    if not fast:
        return F.linear(normed, head.weight[:n_tokens], bias).float()
    logits = (normed.bfloat16() @ centred_head(model, n_tokens)[1].T).float()
    return logits + bias if bias is not None else logits


def read_vocabulary(model: GPT, normed: torch.Tensor, n_tokens: int, must: torch.Tensor, fast: bool,
                    logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of the final norm's output [T, n_embd] through the head (or their `logits`, computed
    already): the TOP likeliest ids [T, TOP], their probabilities, and the probability of `must` [T]
    (ids). `fast`: the logits come from a bf16 matrix multiply; the CANDIDATES likeliest and `must`
    are then recomputed in fp32 and replace their bf16 values in the softmax's sum, so only the
    rest of the sum is bf16's."""
    logits = head_logits(model, normed, n_tokens, fast) if logits is None else logits
    best = logits.topk(CANDIDATES if fast else TOP, dim=-1)
    candidates = torch.cat([best.indices, must[:, None]], -1)
    if fast:
        head, mean = model.lm_head, centred_head(model, n_tokens)[0]
        exact = torch.einsum("td,tkd->tk", normed.float(), head.weight[candidates].float()) - (normed @ mean)[:, None]
        exact = exact + (head.bias[candidates] if head.bias is not None else 0.0)
        peak = torch.maximum(best.values[:, :1], exact.max(-1, keepdim=True).values)  # e^(logit − peak) ≤ 1
        rest = (logits.logsumexp(-1, keepdim=True) - peak).exp() - (best.values - peak).exp().sum(-1, keepdim=True)
        log_total = peak[:, 0] + (rest[:, 0].clamp_min(0) + (exact[:, :-1] - peak).exp().sum(-1)).log()
    else:
        exact, log_total = logits.gather(-1, candidates), logits.logsumexp(-1)
    probs = (exact - log_total[:, None]).exp()
    top = probs[:, :-1].topk(TOP, dim=-1)
    return candidates.gather(-1, top.indices), top.values, probs[:, -1]


@torch.inference_mode()
def logit_lens(model: GPT, ids: list[int], n_tokens: int, fast: bool | None = None) -> LogitLens:
    """The lens over the embeddings and after every block, on the tokenizer's `n_tokens` ids. The
    last row, the model's own output, is always read in fp32; the others through a bf16 head when
    `fast` (None: when fast_head_pays), their probabilities then within about 1% of fp32's."""
    idx = torch.tensor([ids], device=model.lm_head.weight.device)
    final, _, residuals = model.hidden(idx, Probe(residuals=True))
    embeddings = embed(model, idx)
    check_close(model.transformer.h[0](embeddings)[0], residuals[0],
                "this model's embeddings are not GPT-2's (token plus position): not supported for this architecture yet")
    stream = [embeddings, *residuals[:-1]]
    fast = fast_head_pays(model, n_tokens, len(stream) * len(ids)) if fast is None else fast
    own = head_logits(model, final[0], n_tokens, fast=False)
    final_ids = own.argmax(-1)
    read = [read_vocabulary(model, model.transformer.ln_f(x[0]), n_tokens, final_ids, fast) for x in stream]
    read.append(read_vocabulary(model, final[0], n_tokens, final_ids, fast=False, logits=own))
    top_ids, top_probs, chosen = (torch.stack(part).cpu().numpy() for part in zip(*read))
    rows = ("embeddings", *(f"block {number}" for number in range(len(residuals))))
    return LogitLens(rows, top_ids, top_probs, final_ids.cpu().numpy(), chosen, fast)


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
