"""The Train page's Architecture section headless (AppTest): presets set the switches, a
link reopens them, the costs follow (GQA's smaller KV cache shows), a mix that cannot work
says why, and a started run trains the chosen architecture."""

from __future__ import annotations

import json

from explorer.architecture_text import kv_sharing
from explorer.training_view import format_bytes
from lm import run_folder
from lm.architectures import ARCHITECTURES
from lm.checkpoint import read_config
from lm.sizing import inference_memory_bytes, kv_cache_bytes, parameter_count
from lm.tasks import task_tokenizer
from lm.train_config import TrainConfig, padded_vocab_size
from tests.test_train_page import errors, metric, open_train, set_inputs, wait_until_ended

TASK = {"train_what": "A synthetic task", "train_task": "copy"}
SIZES = {"train_n_layer": 2, "train_n_head": 4, "train_n_embd": 32, "train_block_size": 16}  # whatever the task's preset


def task_model(**options):
    sizes = {key.removeprefix("train_"): value for key, value in SIZES.items()}
    return TrainConfig(**sizes, **options).model_config(padded_vocab_size(task_tokenizer().vocab_size))


def test_a_preset_sets_the_switches_and_the_costs_follow(app_dirs):
    at = set_inputs(open_train(**TASK), SIZES)
    gpt2 = task_model()
    assert metric(at, "Parameters") == f"{parameter_count(gpt2):,}"
    assert metric(at, "KV cache (16 tokens)") == format_bytes(kv_cache_bytes(gpt2))
    at.radio(key="train_arch").set_value("Llama-style").run()
    assert not at.exception, at.exception
    llama = task_model(**ARCHITECTURES["Llama-style"].settings(4))
    assert (at.radio(key="train_position").value, at.radio(key="train_norm").value, at.radio(key="train_mlp").value,
            at.selectbox(key="train_n_kv_head").value, at.toggle(key="train_tied_head").value) == (
        "rope", "rmsnorm", "swiglu", 2, False)
    assert metric(at, "Parameters") == f"{parameter_count(llama):,}" != f"{parameter_count(gpt2):,}"
    assert metric(at, "Memory to run") == format_bytes(inference_memory_bytes(llama))
    cache = next(m for m in at.metric if m.label == "KV cache (16 tokens)")
    assert cache.value == format_bytes(kv_cache_bytes(gpt2) // 2) and cache.delta.startswith("-50%")
    assert kv_sharing(4, 2) in [c.value for c in at.caption]
    at.radio(key="train_mlp").set_value("relu2").run()
    assert at.radio(key="train_arch").value == "custom"  # one switch moved: a mix of one's own
    assert at.radio(key="train_position").value == "rope"


def test_a_link_with_a_preset_opens_with_its_switches(app_dirs):
    at = set_inputs(open_train(**TASK, train_arch="Qwen3-style"), SIZES)
    assert at.toggle(key="train_qk_norm").value is True
    assert at.number_input(key="train_rope_base").value == 1_000_000
    at = open_train(**TASK, train_arch="custom", train_mlp="swiglu", train_window="4")
    assert (at.radio(key="train_mlp").value, at.radio(key="train_position").value) == ("swiglu", "learned")
    assert at.number_input(key="train_window").value == 4


def test_windowed_layers_are_chosen_from_the_models_layers(app_dirs):
    at = set_inputs(open_train(**TASK, train_arch="custom", train_window="4"), {"train_n_layer": 3})
    assert at.multiselect(key="train_window_layers").options == ["0", "1", "2"]
    at.multiselect(key="train_window_layers").set_value([0, 2]).run()
    set_inputs(at, {"train_n_layer": 2})  # layer 2 is gone: the choice keeps what is left
    assert at.multiselect(key="train_window_layers").value == [0]
    assert not errors(at) and not at.button(key="train_start").disabled


def test_a_mix_that_cannot_work_says_why_and_cannot_start(app_dirs):
    at = set_inputs(open_train(**TASK, train_arch="custom", train_n_embd="30"), {"train_n_head": 2})
    at.radio(key="train_position").set_value("rope").run()
    at.number_input(key="train_rotary_fraction").set_value(0.1).run()  # 15 × 0.1: no whole pair to turn
    assert "rotary turns pairs of dimensions" in at.warning[0].value
    assert "rotary turns pairs of dimensions" in errors(at) and at.button(key="train_start").disabled


def test_a_started_run_trains_the_chosen_architecture(app_dirs):
    at = set_inputs(open_train(**TASK), SIZES | {"train_max_steps": 3, "train_eval_every": 3})
    at.radio(key="train_arch").set_value("Pythia-style").run()
    at.text_input(key="train_name").set_value("pythia-like").run()
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    folder = app_dirs / "runs" / "pythia-like"
    options = json.loads((folder / run_folder.TRAIN_CONFIG_FILE).read_text())
    assert (options["rotary_fraction"], options["parallel_residual"], options["mlp"]) == (0.25, True, "gelu_exact")
    info = wait_until_ended("pythia-like")
    assert info.state == "finished", info.error
    model, _ = read_config(folder)
    assert (model.rotary_dims, model.parallel_residual, model.tied_head) == (2, True, False)


def test_one_expert_a_layer_takes_one_expert_per_token(app_dirs):
    """Experts per token is bounded by the experts a layer: one expert must not exceed its default of 2."""
    at = open_train(**TASK)
    at.number_input(key="train_n_experts").set_value(1).run()
    assert not at.exception, at.exception
    assert at.number_input(key="train_experts_top_k").value == 1
