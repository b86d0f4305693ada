"""GPTConfig: the model's sizes and its architecture dial.

The defaults are GPT-2 exactly (learned positions, pre-LayerNorm, GELU MLP 4× wide, one
key/value head per query head, full causal attention, sequential residual, tied head,
biases), so a config.json written before the dial existed loads unchanged. Each switch
turns one later idea on, the way Llama, Qwen, Mistral, Pythia or Gemma differ from GPT-2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from lm.sizing import cost_problem, memory_problem

SHAPING_FIELDS = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "bias")
POSITIONS = {"learned": "a learned vector per position, added to the token's (GPT-2)",
             "rope": "rotary: queries and keys are rotated by their position (Llama, Qwen, Pythia)"}
NORMS = {"layernorm": "subtract the mean, divide by the spread, scale and shift (GPT-2)",
         "rmsnorm": "divide by the root mean square, scale: cheaper, no mean (Llama, Qwen)"}
NORM_POSITIONS = {"pre": "normalize each sublayer's input; the residual stream is left alone (GPT-2)",
                  "post": "normalize after adding each sublayer's output (the original Transformer)",
                  "sandwich": "normalize each sublayer's input and its output, before it is added (Gemma 2, 3)"}
MLPS = {"gelu": "GELU, tanh approximation (GPT-2)", "gelu_exact": "GELU, exact erf form (Pythia)",
        "swiglu": "SiLU(x·W_gate) × (x·W_up): a gated MLP (Llama, Qwen, Mistral)", "relu2": "ReLU(x)² (Primer, nanochat)",
        "geglu": "GELU(x·W_gate) × (x·W_up): a gated MLP with GELU (Gemma)"}
GATED_MLPS = ("swiglu", "geglu")


class ConfigError(ValueError):
    """A config that cannot work; the message names the field and why."""


@dataclass
class GPTConfig:
    vocab_size: int = 50304
    block_size: int = 256  # context length: how many tokens the model sees at once
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms, as in GPT-2
    # --- the architecture dial (defaults: GPT-2) ---
    position: str = "learned"  # POSITIONS
    rope_base: float = 10000.0  # rotary: the slowest pair turns once in about 2π·base positions
    rotary_fraction: float = 1.0  # rotary: the share of each head's dimensions rotated (Pythia: 0.25)
    rope_local_base: float | None = None  # rotary base of the windowed layers; None: rope_base (Gemma 3: 10,000 vs 1M)
    norm: str = "layernorm"  # NORMS
    norm_eps: float = 1e-5
    norm_position: str = "pre"  # NORM_POSITIONS
    qk_norm: bool = False  # RMSNorm each head's queries and keys before scoring (Qwen3, OLMo 2)
    mlp: str = "gelu"  # MLPS
    mlp_hidden: int | None = None  # the MLP's width; None: 4 × n_embd
    n_kv_head: int | None = None  # key/value heads, shared by groups of query heads; None: n_head (MHA), 1: MQA
    head_size: int | None = None  # each head's q/k/v length; None: n_embd // n_head
    attn_scale_size: int | None = None  # scores are QKᵀ/√(this); None: the head size (Gemma 3: query_pre_attn_scalar)
    window: int | None = None  # sliding window: a query sees itself and the window − 1 tokens before it
    window_layers: list[int] | None = None  # which layers use the window; None: all (Gemma 3 mixes)
    parallel_residual: bool = False  # x + attn(norm x) + mlp(norm x) in one step (GPT-J, Pythia)
    tied_head: bool = True  # the output head is the token embedding (GPT-2)
    n_experts: int = 0  # mixture of experts (lm.moe): each MLP becomes this many, a router picks some per token; 0: dense
    experts_top_k: int = 2  # the experts each token goes through, mixed by the router's weights (Mixtral: 2 of 8)
    moe_aux_weight: float = 0.01  # the load-balancing loss's weight in the training loss (Switch Transformer: 0.01)
    scale_embeddings: bool = False  # token embeddings × √n_embd on the way in (Gemma); a tied head reads them unscaled

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def head_dim(self) -> int:
        return self.head_size or self.n_embd // self.n_head

    @property
    def gated_mlp(self) -> bool:
        """SwiGLU or GeGLU: c_fc makes a gate and an up projection side by side."""
        return self.mlp in GATED_MLPS

    @property
    def mlp_width(self) -> int:
        return self.mlp_hidden or 4 * self.n_embd

    @property
    def rotary_dims(self) -> int:
        """How many of each head's dimensions rotary positions turn (0 with learned positions)."""
        return int(self.head_dim * self.rotary_fraction) if self.position == "rope" else 0

    def windowed(self, layer: int) -> int | None:
        """The sliding window of `layer`, or None where it sees the whole context."""
        return self.window if self.window_layers is None or layer in self.window_layers else None

    def rope_base_of(self, layer: int) -> float:
        """The rotary base of `layer`: rope_local_base where it is windowed and that is set."""
        local = self.rope_local_base is not None and self.windowed(layer) is not None
        return self.rope_local_base if local else self.rope_base

    def validate(self, memory_bytes: int | None = None, training: bool = True) -> GPTConfig:
        """Raise ConfigError unless the config can build a model within the app's cost limit
        (lm.sizing.cost_problem) that fits in memory (lm.sizing.memory_problem: for training
        with AdamW or, with training=False, for running it)."""
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            _check_whole(name, getattr(self, name))
        if self.head_size is None and self.n_embd % self.n_head:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): each head gets an equal "
                f"slice of the embedding; try n_embd = {self.n_head * max(1, round(self.n_embd / self.n_head))}"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be a number in [0, 1), not {self.dropout!r}")
        self._check_dial()
        if problem := cost_problem(self) or memory_problem(self, memory_bytes, training):
            raise ConfigError(problem)
        return self

    def _check_dial(self) -> None:
        for name, choices in (("position", POSITIONS), ("norm", NORMS), ("norm_position", NORM_POSITIONS), ("mlp", MLPS)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {getattr(self, name)!r}")
        for name in ("bias", "qk_norm", "parallel_residual", "tied_head", "scale_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, not {getattr(self, name)!r}")
        for name in ("mlp_hidden", "n_kv_head", "head_size", "window", "attn_scale_size"):
            if getattr(self, name) is not None:
                _check_whole(name, getattr(self, name))
        for name in ("rope_base", "norm_eps", "rope_local_base"):
            value = getattr(self, name)
            if value is None and name == "rope_local_base":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ConfigError(f"{name} must be a positive number, not {value!r}")
        if self.n_head % self.kv_heads:
            raise ConfigError(f"n_kv_head ({self.kv_heads}) must divide n_head ({self.n_head}): each key/value head "
                              f"serves an equal group of query heads (MHA: n_kv_head = n_head, MQA: 1)")
        fraction = self.rotary_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ConfigError(f"rotary_fraction must be in (0, 1], not {fraction!r}")
        if self.position == "rope" and (self.rotary_dims < 2 or self.rotary_dims % 2):
            raise ConfigError(f"rotary turns pairs of dimensions: head size {self.head_dim} × rotary_fraction "
                              f"{fraction} = {self.head_dim * fraction:g} must give an even number, at least 2")
        if self.window_layers is not None:
            if self.window is None:
                raise ConfigError("window_layers needs a window: the size of the sliding window those layers use")
            if not isinstance(self.window_layers, list) or not all(
                    type(i) is int and 0 <= i < self.n_layer for i in self.window_layers):
                raise ConfigError(f"window_layers must list layer numbers from 0 to {self.n_layer - 1}, "
                                  f"not {self.window_layers!r}")
        self._check_experts()
        if self.parallel_residual and self.norm_position != "pre":
            raise ConfigError("parallel_residual is a pre-norm layout (x + attn(norm x) + mlp(norm x)); "
                              "choose norm_position 'pre' or a sequential residual")

    def _check_experts(self) -> None:
        if self.n_experts != 0:
            _check_whole("n_experts", self.n_experts)
            _check_whole("experts_top_k", self.experts_top_k)
            if self.experts_top_k > self.n_experts:
                raise ConfigError(f"experts_top_k ({self.experts_top_k}) must be at most n_experts ({self.n_experts}): "
                                  "a token cannot go through more experts than there are")
        weight = self.moe_aux_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < float("inf"):
            raise ConfigError(f"moe_aux_weight must be a number, 0 or more, not {weight!r}")

    @classmethod
    def from_dict(cls, data: dict) -> GPTConfig:
        """The config a checkpoint's config.json holds: every field that shapes the weights must
        be there (a default would build the wrong shapes and fail later, less clearly). The
        dial's switches may be absent: a config from before the dial is GPT-2."""
        if not isinstance(data, dict):
            raise ConfigError(f"the model config must be a JSON object, not {type(data).__name__}")
        missing = [name for name in SHAPING_FIELDS if name not in data]
        if missing:
            raise ConfigError(f"the model config has no {', '.join(missing)}")
        return from_known_fields(cls, data, "model config fields")

    def to_dict(self) -> dict:
        return asdict(self)


def _check_whole(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive whole number, not {value!r}")


def from_known_fields(cls, data: dict, what: str):
    """cls(**data) for a dataclass, naming any key it has no field for (a typo in a config
    file would otherwise end in a bare TypeError)."""
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ConfigError(f"unknown {what}: {', '.join(sorted(unknown))}")
    return cls(**data)
