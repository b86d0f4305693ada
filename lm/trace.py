"""The residual stream taken apart, layer by layer, through the model's own modules.

GPT-2's blocks add to one running vector per token, the residual stream: the embeddings,
then each layer's attention (the sum of its heads' outputs through the output projection,
plus its bias), then each layer's MLP. Interpretability views need those parts one by one
(the logit lens, direct logit attribution, activation patching, neurons), so this module
walks the blocks itself, calling block.ln_1, attn, ln_2 and mlp, and keeps each part.

`step` follows the four layouts the model has: GPT-2's sequential pre-norm (attention,
add, then MLP, add); a parallel residual (GPT-J, Pythia: attention and MLP read the same
normalised input and both are added); post-norm (the original Transformer: the stream is
normalised after each addition, so a block's output is ln_2's); and sandwich norms (Gemma:
pre-norm, with each sublayer's output normalised again before it is added; attn_out and
mlp_out are kept before those output norms, what the heads and neurons make). The switches
inside the modules (rotary positions, RMSNorm, QK-norm, fewer key/value heads, a window,
another MLP or a mixture of experts) change nothing here. Every walk is also checked against
the model's own forward pass, so a layout this module does not know raises
UnsupportedArchitecture rather than giving wrong numbers. That check runs once per model and
text length: the walk and the model's pass call the same modules, so only the layout (a
property of the model) or the length (a window) could make them differ, never the tokens.
The model is only read (it is shared between sessions)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, fields

import torch

from lm.attention import KVCache, Probe
from lm.model import GPT, Block

TOLERANCE = 1e-4  # relative: float32 rounding in a different order of additions
_VERIFIED: weakref.WeakKeyDictionary[GPT, set[int]] = weakref.WeakKeyDictionary()  # model → lengths checked


class UnsupportedArchitecture(ValueError):
    """This view cannot take this model apart yet; the message says why."""


@dataclass(frozen=True)
class LayerParts:
    """What one block read and wrote at each position of a batch: [batch, T, n_embd] unless noted."""

    resid_pre: torch.Tensor  # the residual stream coming in
    heads: torch.Tensor  # [batch, heads, T, head size]: each head's output before the projection
    attn_out: torch.Tensor  # the attention's output: projected heads plus bias (sandwich: before ln_attn_out)
    resid_mid: torch.Tensor  # after the attention's write (post-norm: ln_1 of it; parallel: the MLP does not read it)
    mlp_in: torch.Tensor  # what the MLP reads
    mlp_out: torch.Tensor  # the MLP's output (sandwich: before ln_mlp_out)
    resid_post: torch.Tensor  # after the MLP's write: the next block's resid_pre
    keys: torch.Tensor  # [batch, key/value heads, T, head size]: what the layer's KV cache holds (rotated, normed)
    values: torch.Tensor


def step(block: Block, x: torch.Tensor, heads: torch.Tensor | None = None, head_mask: torch.Tensor | None = None,
         cache: KVCache | None = None) -> LayerParts:
    """One block on x [batch, T, n_embd], in the block's layout (see the module's docstring).
    With `heads` [batch, heads, T, head size] and `head_mask` [batch, heads] (True: take it
    from `heads`), those heads' outputs are replaced before the projection: activation
    patching. With a `cache`, x are the positions after those it holds."""
    _, steps = block.attn(x if block.post_norm else block.ln_1(x), Probe(explain=True, cache=cache))
    outputs = steps.output
    if heads is not None:
        outputs = torch.where(head_mask[:, :, None, None], heads, outputs)
    B, H, T, D = outputs.shape
    attn_out = block.attn.c_proj(outputs.transpose(1, 2).reshape(B, T, H * D))
    group = block.attn.n_head // block.attn.n_kv_head  # steps hold each query head's copy of its group's key
    cached = steps.k[:, ::group], steps.v[:, ::group]
    if block.post_norm:  # the stream is normalised after each addition
        mid = block.ln_1(x + attn_out)
        mlp_out = block.mlp(mid)
        return LayerParts(x, outputs, attn_out, mid, mid, mlp_out, block.ln_2(mid + mlp_out), *cached)
    mid = x + block.ln_attn_out(attn_out)  # parallel: what the attention adds, though the MLP does not read it
    mlp_in = block.ln_2(x if block.parallel else mid)
    mlp_out = block.mlp(mlp_in)  # the output norms are Identity unless the blocks are sandwiched
    return LayerParts(x, outputs, attn_out, mid, mlp_in, mlp_out, mid + block.ln_mlp_out(mlp_out), *cached)


@dataclass(frozen=True)
class Trace:
    """One text through the whole model, part by part (batch of one kept: [1, ...])."""

    ids: tuple[int, ...]
    embeddings: torch.Tensor  # [1, T, n_embd]
    layers: list[LayerParts]
    final: torch.Tensor  # [1, T, n_embd]: the final norm's output, the model's own (the head makes it logits)

    def logits(self, model: GPT, position: int) -> torch.Tensor:
        """[vocab]: the model's logits at one position (all of them would cost a vocabulary-wide matmul)."""
        return model.lm_head(self.final[0, position])

    def detached(self) -> Trace:
        """The same numbers, out of any autograd graph."""
        layers = [LayerParts(*(getattr(parts, f.name).detach() for f in fields(LayerParts))) for parts in self.layers]
        return Trace(self.ids, self.embeddings.detach(), layers, self.final.detach())


def walk(model: GPT, idx: torch.Tensor, leaf: bool = False) -> tuple[torch.Tensor, list[LayerParts]]:
    """The embeddings and every block's parts for a batch of ids [batch, T] (unchecked: see
    verify_walk). `leaf`: the embeddings start the autograd graph (gradients for the activations
    can then be asked for, none for the shared model's weights)."""
    x = embeddings = model.embed(idx).detach().requires_grad_() if leaf else model.embed(idx)
    layers = []
    for block in model.transformer.h:
        layers.append(step(block, x))
        x = layers[-1].resid_post
    return embeddings, layers


def verify_walk(model: GPT, idx: torch.Tensor, layers: list[LayerParts]) -> None:
    """UnsupportedArchitecture unless the walk's residual stream is the model's own after every
    block; checked on the first walk of each length of each model (see the module's docstring)."""
    lengths = _VERIFIED.setdefault(model, set())
    if idx.size(1) in lengths:
        return
    with torch.no_grad():
        _, _, residuals = model.hidden(idx, Probe(residuals=True))
    for number, (parts, expected) in enumerate(zip(layers, residuals)):
        check_close(parts.resid_post, expected, LAYOUT.format(what=f"the residual stream after block {number}"))
    lengths.add(idx.size(1))


@torch.inference_mode()
def trace(model: GPT, ids: list[int]) -> Trace:
    """Every part the residual stream is made of, for 1 to block_size ids; checked against
    the model's own forward pass (UnsupportedArchitecture when they differ)."""
    if not 0 < len(ids) <= model.config.block_size:
        raise ValueError(f"need 1 to {model.config.block_size} tokens, got {len(ids)}")
    idx = torch.tensor([ids], device=model.lm_head.weight.device)
    embeddings, layers = walk(model, idx)
    verify_walk(model, idx, layers)
    return Trace(tuple(ids), embeddings, layers, model.transformer.ln_f(layers[-1].resid_post))


LAYOUT = (
    "this model's blocks are laid out in a way this view does not know (not GPT-2's, a parallel residual's, "
    "post-norm's or sandwich norms'), so {what} cannot be taken apart here: not supported for this architecture yet"
)


def check_close(ours: torch.Tensor, model_s: torch.Tensor, problem: str) -> None:
    """Raise UnsupportedArchitecture(problem) unless our walk reproduces the model's own numbers."""
    scale = float(model_s.abs().max().clamp_min(1.0))
    if not torch.allclose(ours, model_s, rtol=TOLERANCE, atol=TOLERANCE * scale):
        raise UnsupportedArchitecture(problem)


def head_writes(block: Block, heads: torch.Tensor) -> torch.Tensor:
    """[heads, batch, T, n_embd]: what each head adds to the residual stream on its own (its
    slice of the output projection; the projection's bias is the layer's, not a head's)."""
    weight = block.attn.c_proj.weight  # [heads × head size, n_embd]: lm.attention.Linear's layout
    B, H, T, D = heads.shape
    return torch.einsum("bhtd,hdc->hbtc", heads, weight.view(H, D, -1))


def projection_bias(block: Block) -> torch.Tensor | None:
    return block.attn.c_proj.bias


def neuron_activations(block: Block, mlp_in: torch.Tensor, mlp_out: torch.Tensor) -> torch.Tensor:
    """[batch, T, the MLP's width]: its hidden units after the activation (GELU in GPT-2), what
    its output projection reads; checked against the MLP's own output."""
    mlp = block.mlp
    if hasattr(mlp, "experts"):
        raise UnsupportedArchitecture("this model's MLPs are mixtures of experts (a router sends each token to a few "
                                      "MLPs): their neurons are not supported for this architecture yet")
    hidden = mlp.activation(mlp.c_fc(mlp_in))
    check_close(mlp.c_proj(hidden), mlp_out, "this model's MLP is not built as this view expects: its neurons are "
                "not supported for this architecture yet")
    return hidden
