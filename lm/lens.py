"""Reading the residual stream in the vocabulary's terms.

The logit lens stops the model after each layer: the residual stream at that point goes
through the final norm and the head as if no block came after, and gives a next-token
guess per position. (Post-norm blocks end normalised and the model has no final norm: the
lens reads each block's output through the head as it is, as the head reads the last one.)

Direct logit attribution splits one logit into what each part wrote: the final norm is a
LayerNorm, (x − mean) / σ · γ + β, linear in x once σ (the spread of the final residual at
that position) is frozen at its value; so each part's direct effect is (part − its mean) /
σ · γ · W[target], and the parts plus β · W[target] add up to the logit exactly. A parallel
residual adds its parts the same way. Post-norm normalises the stream inside every block, so
a part's direct path to the head runs through every later norm: each is frozen at its own σ,
the reading direction is carried back through them, and their β become parts of their own.
Sandwich norms (Gemma) normalise each attention's and MLP's whole output before it is added:
frozen at that output's σ, the norm is linear in it, so each head's write (its slice of the
projection) is read through γ / σ too, and the heads still add up to the block's write.
"Direct": a head's effect through later layers' attention and MLPs is not counted here (that
is what activation patching measures)."""

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
from lm.trace import UnsupportedArchitecture, check_close, head_writes, projection_bias, trace

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
    embeddings = model.embed(idx)
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
    kinds: tuple[str, ...]  # "embeddings", "head", "attention bias", "MLP", "norm bias", "final norm bias"
    heads: tuple[tuple[int, int] | None, ...]  # (layer, head) for a head, else None
    values: np.ndarray  # [parts]: they sum to `logit`
    logit: float  # the model's own logit for the target
    inverse_spread: float  # 1 / σ of the last norm before the head, frozen
    frozen_norms: int = 1  # the norms on the way to the head, each frozen at its σ (post-norm: two per block)
    norm_position: str = "pre"  # the model's layout of norms (lm.config): how the caption says they were frozen

    def top_heads(self, count: int) -> list[tuple[int, int, float]]:
        """The heads that push the logit most, either way: (layer, head, value), largest |value| first."""
        found = [(*where, float(value)) for where, value in zip(self.heads, self.values) if where is not None]
        return sorted(found, key=lambda item: -abs(item[2]))[:count]


def through_norm(norm: nn.Module, u: torch.Tensor, read: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """A norm linearised at its input u [n_embd], its spread σ frozen there: read · norm(v) =
    read′ · v + constant for every v (exactly, while σ is held). Returns (read′, the constant its
    β adds, 1/σ); an Identity passes `read` on unchanged."""
    if isinstance(norm, nn.Identity):
        return read, 0.0, 1.0
    if isinstance(norm, nn.LayerNorm):
        inverse = (u.var(unbiased=False) + norm.eps).rsqrt()
    elif isinstance(norm, nn.RMSNorm):
        inverse = (u.pow(2).mean() + (norm.eps if norm.eps is not None else torch.finfo(u.dtype).eps)).rsqrt()
    else:
        raise UnsupportedArchitecture(f"a norm is a {type(norm).__name__}: attribution is not supported for it yet")
    pulled = (norm.weight if norm.weight is not None else 1.0) * read * inverse
    if isinstance(norm, nn.LayerNorm):  # it subtracts the mean: so does the reading, equivalently
        pulled = pulled - pulled.mean()
    constant = float(norm.bias @ read) if getattr(norm, "bias", None) is not None else 0.0
    return pulled, constant, float(inverse)


@torch.inference_mode()
def direct_attribution(model: GPT, ids: list[int], position: int, target: int) -> Attribution:
    """How much each part of the residual stream at `position` pushes the logit of `target`: each
    part read along the target's output row carried back through the norms between it and the
    head, each frozen at its σ (pre-norm and a parallel residual: the final norm only; post-norm:
    every later block's two norms as well, whose β are then parts too; sandwich: the final norm and
    the part's own output norm, frozen at the σ of the whole sublayer output)."""
    parts = trace(model, ids)
    head, layout = model.lm_head, model.config.norm_position
    read, constant, inverse_spread = through_norm(model.transformer.ln_f, parts.layers[-1].resid_post[0, position],
                                                  head.weight[target])
    constant += float(head.bias[target]) if head.bias is not None else 0.0
    post = layout == "post"
    found = [] if post and constant == 0.0 else [("final norm bias", "final norm bias", None, constant)]  # last first
    for layer in reversed(range(len(parts.layers))):
        block, step = model.transformer.h[layer], parts.layers[layer]
        if post:
            read, constant, inverse = through_norm(block.ln_2, (step.resid_mid + step.mlp_out)[0, position], read)
            inverse_spread = inverse if layer == len(parts.layers) - 1 else inverse_spread
            found.append((f"L{layer} ln_2 bias", "norm bias", None, constant))
        mlp_read = output_norm(block.ln_mlp_out, f"L{layer} ln_mlp_out", step.mlp_out[0, position], read, found)
        found.append((f"L{layer} MLP", "MLP", None, float(step.mlp_out[0, position] @ mlp_read)))
        if post:
            read, constant, _ = through_norm(block.ln_1, (step.resid_pre + step.attn_out)[0, position], read)
            found.append((f"L{layer} ln_1 bias", "norm bias", None, constant))
        attn_read = output_norm(block.ln_attn_out, f"L{layer} ln_attn_out", step.attn_out[0, position], read, found)
        found.extend(attention_parts(block, step, layer, position, attn_read))
    found.append(("embeddings", "embeddings", None, float(parts.embeddings[0, position] @ read)))
    labels, kinds, heads, values = zip(*reversed(found))
    logit = float(parts.logits(model, position)[target])
    frozen = {"post": 2 * len(parts.layers), "sandwich": 1 + 2 * len(parts.layers)}.get(layout, 1)
    return Attribution(labels, kinds, heads, np.array(values, np.float64), logit, inverse_spread, frozen, layout)


def output_norm(norm: nn.Module, label: str, output: torch.Tensor, read: torch.Tensor, found: list[tuple]
                ) -> torch.Tensor:
    """`read` carried back through a sandwich block's norm on a sublayer's `output` [n_embd], frozen at
    that output's σ (an Identity elsewhere: `read` itself); its β, if any, becomes a bar in `found`."""
    pulled, constant, _ = through_norm(norm, output, read)
    if getattr(norm, "bias", None) is not None:
        found.append((f"{label} bias", "norm bias", None, constant))
    return pulled


def attention_parts(block, step, layer: int, position: int, read: torch.Tensor) -> list[tuple]:
    """(label, kind, head, value) of one layer's attention, read along `read`: its projection's bias,
    then its heads last first (the caller reverses the list into the model's order)."""
    writes = head_writes(block, step.heads)[:, 0, position]  # [heads, n_embd]
    bias = projection_bias(block)
    check_close(writes.sum(0) + (bias if bias is not None else 0), step.attn_out[0, position],
                "this model's attention output is not a sum of its heads: not supported for this architecture yet")
    found = [(f"L{layer} attn bias", "attention bias", None, float(bias @ read))] if bias is not None else []
    values = (writes @ read).tolist()
    return found + [(f"L{layer} H{h}", "head", (layer, h), values[h]) for h in reversed(range(len(values)))]
