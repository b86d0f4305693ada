"""Which number format training uses on a CPU (lm.device), and that bf16 training learns as fp32 does."""

from __future__ import annotations

import pytest
import torch

from lm import device
from lm.device import device_precision
from lm.trainer import TrainConfig, Trainer
from tests.checkpoints import shakespeare_bpe
from tests.helpers import read_jsonl


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend the CPU reports these capabilities (torch.cpu.get_capabilities), with LM_CPU_BF16 unset."""

    def pretend(**capabilities) -> None:
        monkeypatch.delenv(device.CPU_BF16_ENV, raising=False)
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)

    return pretend


def test_auto_picks_bf16_on_a_cpu_with_native_bf16_and_says_why(cpu_with):
    cpu_with(avx512_bf16=True, avx2=True)
    chosen = device_precision("auto", "cpu")
    assert chosen.dtype == torch.bfloat16 and not chosen.scaled
    assert "AVX512-BF16" in chosen.describe() and chosen.describe().startswith("bf16: auto")
    cpu_with(amx_bf16=True)
    assert "AMX-BF16" in device_precision("auto", "cpu").why


def test_auto_keeps_fp32_without_native_bf16(cpu_with):
    cpu_with(avx2=True, avx512_f=True)  # AVX-512 without its bf16 instructions: bf16 would be emulated
    chosen = device_precision("auto", "cpu")
    assert chosen.dtype is None and chosen.describe().startswith("fp32: auto: this CPU has no native bf16")


def test_explicit_choices_are_kept(cpu_with):
    cpu_with(avx512_bf16=True)
    assert device_precision("fp32", "cpu").dtype is None
    cpu_with()
    explicit = device_precision("bf16", "cpu")
    assert explicit.dtype == torch.bfloat16 and "slower than fp32" in explicit.why
    with pytest.raises(ValueError, match="fp16 training needs a CUDA GPU"):
        device_precision("fp16", "cpu")


def test_the_environment_can_keep_fp32(cpu_with, monkeypatch):
    cpu_with(avx512_bf16=True)
    monkeypatch.setenv(device.CPU_BF16_ENV, "0")
    chosen = device_precision("auto", "cpu")
    assert chosen.dtype is None and "LM_CPU_BF16=0" in chosen.why
    assert device_precision("bf16", "cpu").dtype == torch.bfloat16  # an explicit choice still holds


STEPS = 40


@pytest.fixture(scope="module")
def curves(tmp_path_factory, shakespeare_text) -> dict[str, list[dict]]:
    """The same tiny run from the same seed, trained in fp32 and in bf16."""
    folder = tmp_path_factory.mktemp("precision")
    (folder / "text.txt").write_text(shakespeare_text[:30_000], encoding="utf-8")
    shakespeare_bpe().save(folder / "bpe.json")
    result = {}
    for precision in ("fp32", "bf16"):
        cfg = TrainConfig(
            data=str(folder / "text.txt"), tokenizer=str(folder / "bpe.json"), out=str(folder / precision),
            n_layer=2, n_head=2, n_embd=64, block_size=32, batch_size=8, max_steps=STEPS, lr=3e-3, min_lr=3e-4,
            warmup_steps=5, log_every=1, eval_every=20, eval_batches=4, sample_every=0, snapshot_every=0, seed=0,
            device="cpu", threads=1, precision=precision,
        )
        assert Trainer(cfg).train() == "finished"
        result[precision] = read_jsonl(folder / precision / "metrics.jsonl")
    return result


def test_bf16_training_follows_the_fp32_curve(curves):
    fp32, bf16 = curves["fp32"], curves["bf16"]
    assert [m["step"] for m in fp32] == [m["step"] for m in bf16]
    assert fp32[-1]["train_loss"] < fp32[0]["train_loss"] - 0.5  # it learned, so the comparison means something
    # the same seed, weights and batches: the first loss differs by bf16's rounding only
    assert bf16[0]["train_loss"] == pytest.approx(fp32[0]["train_loss"], rel=1e-3)
    # after STEPS steps (tolerance 0.5% of the loss; here they differ by about 0.01%)
    assert bf16[-1]["train_loss"] == pytest.approx(fp32[-1]["train_loss"], rel=0.005)
    assert bf16[-1]["val_loss"] == pytest.approx(fp32[-1]["val_loss"], rel=0.005)
    assert bf16[-1]["train_loss"] != fp32[-1]["train_loss"]  # bf16 did run: its rounding shows


def test_bf16_attention_on_a_cpu_is_written_out_only_for_short_contexts():
    def heads(t: int, dtype=torch.bfloat16) -> torch.Tensor:
        return torch.zeros(1, 2, t, 8, dtype=dtype)

    assert device.attention_written_out(heads(256), heads(256))  # its T x T scores are small
    assert not device.attention_written_out(heads(257), heads(257))  # the fused kernel's memory stays linear in T
    assert not device.attention_written_out(heads(128, torch.float32), heads(128, torch.float32))  # fp32: fused is faster



def test_rms_norms_compute_in_fp32_under_bf16_autocast():
    """QK-norm and sandwich norms get bf16 inputs under autocast; they normalise in fp32 (torch's fused
    kernel, which warns and falls back when a bf16 input meets an fp32 weight) and hand back bf16."""
    from torch.overrides import TorchFunctionMode

    from lm.config import GPTConfig
    from lm.model import GPT

    class NormInputs(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.dtypes = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.rms_norm, torch.nn.functional.rms_norm):
                self.dtypes.append(args[0].dtype)
            return func(*args, **(kwargs or {}))

    config = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=4, n_embd=32, norm="rmsnorm", qk_norm=True,
                       norm_position="sandwich", position="rope", mlp="geglu")
    model = GPT(config)
    ids = torch.randint(0, 64, (2, 16))
    with NormInputs() as seen, torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(model(ids, ids).loss)
    assert len(seen.dtypes) == 2 * 6 + 1 and set(seen.dtypes) == {torch.float32}  # per block: ln_1, ln_2, q, k, 2 outputs
    q_norm = model.transformer.h[0].attn.q_norm
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert q_norm(torch.randn(3, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16
