"""Small open-weight models the importer knows (python -m lm import-hf --from REPO_ID), with
the parts of their Hugging Face config.json that fix their shape: enough to count their
parameters, memory and KV cache before anything is downloaded, and to build a random model
of the exact shape where the real weights cannot be downloaded (benchmarks/hf_models.py)."""

from __future__ import annotations

from dataclasses import dataclass

from lm.hf_import import gpt_config
from lm.model import GPTConfig


@dataclass(frozen=True)
class OpenModel:
    repo_id: str
    label: str
    hf_config: dict  # as in the model's config.json

    def config(self, context: int | None = None) -> GPTConfig:
        return gpt_config(self.hf_config, context)


def _llama(**sizes) -> dict:
    return dict(model_type="llama", hidden_act="silu", attention_bias=False, mlp_bias=False, **sizes)


OPEN_MODELS = {
    "smollm2-135m": OpenModel("HuggingFaceTB/SmolLM2-135M", "SmolLM2-135M (Llama, GQA 9:3)", _llama(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=100000.0,
        tie_word_embeddings=True)),
    "smollm2-360m": OpenModel("HuggingFaceTB/SmolLM2-360M", "SmolLM2-360M (Llama, GQA 15:5)", _llama(
        vocab_size=49152, hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
        num_key_value_heads=5, max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=100000.0,
        tie_word_embeddings=True)),
    "qwen3-0.6b": OpenModel("Qwen/Qwen3-0.6B", "Qwen3-0.6B (QK-norm, GQA 16:8)", dict(
        model_type="qwen3", vocab_size=151936, hidden_size=1024, head_dim=128, intermediate_size=3072,
        num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, max_position_embeddings=40960,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False,
        hidden_act="silu", attention_bias=False)),
    "pythia-14m": OpenModel("EleutherAI/pythia-14m", "Pythia-14M (GPT-NeoX: parallel, 1/4 rotary)", dict(
        model_type="gpt_neox", vocab_size=50304, hidden_size=128, intermediate_size=512, num_hidden_layers=6,
        num_attention_heads=4, rotary_pct=0.25, rotary_emb_base=10000, max_position_embeddings=2048,
        layer_norm_eps=1e-5, use_parallel_residual=True, hidden_act="gelu", tie_word_embeddings=False)),
    "pythia-70m": OpenModel("EleutherAI/pythia-70m", "Pythia-70M (GPT-NeoX: parallel, 1/4 rotary)", dict(
        model_type="gpt_neox", vocab_size=50304, hidden_size=512, intermediate_size=2048, num_hidden_layers=6,
        num_attention_heads=8, rotary_pct=0.25, rotary_emb_base=10000, max_position_embeddings=2048,
        layer_norm_eps=1e-5, use_parallel_residual=True, hidden_act="gelu", tie_word_embeddings=False)),
    "pythia-160m": OpenModel("EleutherAI/pythia-160m", "Pythia-160M (GPT-NeoX: parallel, 1/4 rotary)", dict(
        model_type="gpt_neox", vocab_size=50304, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, rotary_pct=0.25, rotary_emb_base=10000, max_position_embeddings=2048,
        layer_norm_eps=1e-5, use_parallel_residual=True, hidden_act="gelu", tie_word_embeddings=False)),
    "gemma-3-270m": OpenModel("google/gemma-3-270m", "Gemma 3 270M (sandwich norms, GeGLU, 5 local : 1 global; "
                              "accept its licence first)", dict(
        model_type="gemma3_text", vocab_size=262144, hidden_size=640, head_dim=256, intermediate_size=2048,
        num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=32768,
        rms_norm_eps=1e-6, rope_theta=1000000.0, rope_local_base_freq=10000.0, rope_scaling=None,
        sliding_window=512, sliding_window_pattern=6, query_pre_attn_scalar=256,
        hidden_activation="gelu_pytorch_tanh", attention_bias=False, tie_word_embeddings=True,
        attn_logit_softcapping=None, final_logit_softcapping=None)),
}
