"""The output head laid out for generation, where reading it is most of a step's work.

A cached one-token step reads each block's weights once (42 MB at 6 layers, 384 wide) and
the head once (77 MB in fp32 at GPT-2's 50,257 tokens). On a CPU a one-token product is
limited by how fast memory delivers the weights, not by arithmetic, so the head's layout
and number format set most of a step's time. Two layouts, kept with the model while its
weights stay (a copy costs 50-150 ms at that size, and its size in memory):

- fp32 as [n_embd, n_tokens]: a CPU reads it about three times as fast in this order as in
  nn.Linear's [n_tokens, n_embd] (2.7 against 9.2 ms at that size).
- On a CPU that multiplies bf16 natively (lm.device.cpu_bf16_feature; LM_CPU_BF16=0 keeps
  fp32): the head in bf16, half the bytes, in oneDNN's own layout (the one torch.compile
  gives a bf16 linear on a CPU), read in about 1.2 ms. bf16 keeps 8 bits of a number, and its
  product comes back in bf16, so two things keep the logits close to fp32's:
  * the packed rows are the head's rows less their mean row: a trained head's logits share a
    large common part (GPT-2's sit near -100, where bf16's steps are 0.5 apart), which the
    softmax ignores; bf16 then rounds only what tells tokens apart, and x·mean is added back
    in fp32;
  * the SHORTLIST tokens bf16 ranks highest get their logits again in fp32 from the model's
    own rows (SHORTLIST dot products, microseconds): greedy's choice, the top alternatives a
    page shows and nearly all the probability carry fp32's logits, and only the tail of
    unlikely tokens keeps bf16's. tests/test_generate_bf16.py checks the stated TOLERANCE
    against the fp32 path.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

import torch

from lm.device import CPU_BF16_ENV, cpu_bf16_feature

SHORTLIST = 64  # tokens whose logits are recomputed in fp32 after a bf16 head (at least the page's top 10)
BF16_MIN_ELEMENTS = 4 * 2**20  # 16 MiB in fp32: smaller heads are read as fast in fp32 (1024x128: 6 against 37 µs)
TOLERANCE = dict(probability=1e-3, top_relative=0.01)  # of the bf16 head against fp32: any probability
# within 0.001 of fp32's, and the 10 most likely tokens' within 1% of theirs (measured on the tests' heads,
# GPT-2-like ones included, at most 2e-4 and 0.2%)


@dataclass(frozen=True, eq=False)
class Readout:
    """The head cut to the tokenizer's ids (a model's vocabulary may be padded, and padding
    rows are not tokens), in one of the two layouts: `columns` or `packed`."""

    weight: torch.Tensor  # the model's own [n_tokens, n_embd] rows (a view, no copy)
    columns: torch.Tensor | None = None  # [n_embd, n_tokens] contiguous, the weight's format
    packed: torch.Tensor | None = None  # bf16 in oneDNN's layout, of the rows less their mean
    mean: torch.Tensor | None = None  # [n_embd]: the mean row, which packed leaves out

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Next-token logits [n_tokens] from one position's final hidden state x [n_embd]."""
        if self.packed is None:
            return x @ self.columns
        logits = torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16).view(1, -1), self.packed, None, "none", [], "")
        logits = logits.view(-1).float() + x @ self.mean
        shortlist = logits.topk(min(SHORTLIST, logits.numel())).indices
        logits[shortlist] = self.weight[shortlist] @ x.to(self.weight.dtype)
        return logits


def bf16_head_helps(weight: torch.Tensor) -> bool:
    """Whether the bf16 layout is the faster one here: an fp32 head too big for a CPU's caches
    (BF16_MIN_ELEMENTS) on a CPU with native bf16, unless LM_CPU_BF16=0 asks for fp32 everywhere.
    A small head (the demo model's, the tests') stays fp32: it is read from cache, where bf16's
    extra steps cost more than its halved bytes save."""
    return (weight.device.type == "cpu" and weight.dtype == torch.float32 and weight.numel() >= BF16_MIN_ELEMENTS
            and os.environ.get(CPU_BF16_ENV) != "0" and cpu_bf16_feature() is not None
            and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def lay_out(weight: torch.Tensor, bf16: bool) -> Readout:
    """A Readout of these rows (detached) in the layout asked for."""
    weight = weight.detach()
    if bf16:
        mean = weight.mean(dim=0)
        packed = torch.ops.mkldnn._reorder_linear_weight((weight - mean).to(torch.bfloat16), 1)  # for 1 row of x
        return Readout(weight, packed=packed, mean=mean)
    return Readout(weight, columns=weight.t().contiguous())


_KEPT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (weight, its version, n_tokens, bf16, Readout)


def readout(model, n_tokens: int) -> Readout:
    """The model's head laid out for generation (in bf16 where bf16_head_helps), kept while the
    weight is unchanged (same tensor, same in-place version), so each generation, or each
    single step the app asks for, does not lay it out again. Whatever writes the weights in
    place must bump that version: the fused AdamW does not, so lm.trainer.make_optimizer
    bumps it after each step."""
    weight = model.lm_head.weight
    bf16 = bf16_head_helps(weight)
    if weight.is_inference():  # made under torch.inference_mode: it keeps no version to check
        return lay_out(weight[:n_tokens], bf16)
    key = (weight._version, n_tokens, bf16)
    kept = _KEPT.get(model)
    if kept is not None and kept[0] is weight and kept[1:4] == key:
        return kept[4]
    head = lay_out(weight[:n_tokens], bf16)
    _KEPT[model] = (weight, *key, head)
    return head
