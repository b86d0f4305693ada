"""The architecture dial in words, for the Train page's switches, the Model view and the
step-through: a one-line why for each switch's setting, and which query heads share a
key/value head. Pure functions of plain values."""

from __future__ import annotations

from lm.config import MLPS, NORM_POSITIONS, NORMS, POSITIONS

CHOICES = {"position": POSITIONS, "norm": NORMS, "norm_position": NORM_POSITIONS, "mlp": MLPS}
WHY = {  # switch: (why when on or set, why when off or default)
    "qk_norm": ("queries and keys are RMS-normalized per head: scores cannot blow up, training stays stable "
                "(Qwen3, Gemma 3, OLMo 2)", "queries and keys are scored as they come (GPT-2, Llama)"),
    "parallel_residual": ("attention and MLP read the same normalized input side by side: x + attn + mlp, one step "
                          "(GPT-J, Pythia)", "the MLP reads what attention wrote: x + attn, then + mlp (GPT-2, Llama)"),
    "tied_head": ("the output head reuses the token embedding: vocab × width fewer parameters (GPT-2, Qwen3-0.6B)",
                  "the output head has its own matrix: reading and writing tokens can differ (Llama, Pythia)"),
    "bias": ("Linear layers and norms have biases (GPT-2, Pythia)",
             "no biases: later models found they add parameters and nothing else (Llama, Qwen)"),
    "scale_embeddings": ("token embeddings are multiplied by √width on the way in, so they weigh as much as what "
                         "the normalized blocks add (Gemma)", "token embeddings enter as they are (GPT-2, Llama)"),
    "window": ("each token sees only the last {value} tokens, so attention's cost stops growing with the context "
               "(Mistral, Gemma 3; their caches keep only those tokens, this project's keeps them all)",
               "each token sees every token before it"),
    "n_experts": ("each MLP becomes {value} experts and a router sends each token to a few: many more parameters "
                  "for the same work per token (Mixtral, Qwen3-MoE, DeepSeek)",
                  "one MLP a layer, and every token goes through all of it (GPT-2, Llama)"),
}


def why(name: str, value) -> str:
    """One line on what a switch's value does and who uses it."""
    if name in CHOICES:
        return CHOICES[name].get(value, "")
    on, off = WHY[name]
    return on.format(value=value) if value else off


def kv_groups(n_head: int, kv_heads: int) -> list[list[int]]:
    """The query heads of each key/value head, in order (lm.attention repeats each key/value
    head for n_head / kv_heads query heads in a row)."""
    group = n_head // kv_heads
    return [list(range(g * group, (g + 1) * group)) for g in range(kv_heads)]


def _heads(heads: list[int]) -> str:
    return str(heads[0]) if len(heads) == 1 else f"{heads[0]}–{heads[-1]}"


def attention_kind(n_head: int, kv_heads: int) -> str:
    return "MHA" if kv_heads == n_head else "MQA" if kv_heads == 1 else "GQA"


def kv_sharing(n_head: int, kv_heads: int) -> str:
    """Which query heads share a key/value head, in a sentence."""
    kind = attention_kind(n_head, kv_heads)
    if kind == "MHA":
        return "MHA: every query head has a key/value head of its own (GPT-2)"
    if kind == "MQA":
        return f"MQA: all {n_head} query heads share one key/value head: the smallest KV cache"
    groups = "; ".join(f"heads {_heads(q)} share key/value head {g}" for g, q in enumerate(kv_groups(n_head, kv_heads)))
    return f"GQA: {groups}. The KV cache is {n_head // kv_heads}× smaller (Llama 3, Qwen, Mistral)"


def kv_head_of(head: int, n_head: int, kv_heads: int) -> int:
    return head // (n_head // kv_heads)
