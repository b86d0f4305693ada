"""`lm finetune`'s numeric options: an impossible value (negative, out of its range, nan, inf) is
refused by name in one line before anything is written; the edges of each range are accepted."""

from __future__ import annotations

import pytest

from lm.__main__ import main
from lm.finetune.config import FinetuneConfig
from tests.checkpoints import make_checkpoint


@pytest.mark.parametrize("flags, message", [
    (["--grad-clip", "-1"], "grad-clip must be a number, 0 or more (0: no clipping), not -1.0"),
    (["--grad-clip", "nan"], "grad-clip must be a number, 0 or more (0: no clipping), not nan"),
    (["--beta1", "1"], "beta1 must be a number from 0 up to (not including) 1, not 1.0"),
    (["--beta1", "-0.1"], "beta1 must be a number from 0 up to (not including) 1, not -0.1"),
    (["--beta2", "nan"], "beta2 must be a number from 0 up to (not including) 1, not nan"),
    (["--min-lr-ratio", "1.5"], "min-lr-ratio must be a number from 0 to 1, not 1.5"),
    (["--min-lr-ratio", "-0.5"], "min-lr-ratio must be a number from 0 to 1, not -0.5"),
    (["--weight-decay", "-0.1"], "weight-decay must be a number, 0 or more, not -0.1"),
    (["--weight-decay", "inf"], "weight-decay must be a number, 0 or more, not inf"),
    (["--lr", "nan"], "lr must be a positive number, not nan"),
    (["--beta", "inf"], "beta must be a positive number, not inf"),
    (["--lora-rank", "2", "--lora-alpha", "nan"], "lora-alpha must be a positive number, not nan"),
    (["--lora-rank", "2", "--lora-alpha", "-4"], "lora-alpha must be a positive number, not -4.0"),
    (["--seed", "-1"], "seed must be a whole number of at least 0, not -1"),
    (["--seed", str(2**31)], "seed must be a whole number from 0 to 2147483647, not 2147483648"),
    (["--trainable-blocks", "-1"], "trainable-blocks must be a whole number of at least 0, not -1"),
])
def test_impossible_numbers_are_refused_before_anything_is_written(tmp_path, flags, message, capsys):
    source = make_checkpoint(tmp_path / "source")
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        main(["finetune", "dpo", "--from", str(source), "--out", str(out), *flags])
    assert exit_.value.code == 2  # bad input, as lm finetune refuses every other
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"
    assert not out.exists()


def test_the_edges_of_each_range_are_accepted():
    cfg = FinetuneConfig(method="classify", source="m", grad_clip=0.0, beta1=0.0, beta2=0.0, min_lr_ratio=1.0,
                         weight_decay=0.0, seed=2**31 - 1, lora_rank=1, lora_alpha=1e-3).resolved()
    assert cfg.min_lr == cfg.lr and cfg.seed == 2**31 - 1
    assert FinetuneConfig(method="classify", source="m", min_lr_ratio=0.0, seed=0).resolved().min_lr == 0


def test_a_resumed_runs_settings_are_checked_too():
    """Settings read back from a run (JSON) may hold anything: a string is refused by name."""
    with pytest.raises(ValueError, match="weight-decay must be a number, 0 or more, not '0.1'"):
        FinetuneConfig.from_dict({"method": "classify", "source": "m", "weight_decay": "0.1"}).resolved()
    with pytest.raises(ValueError, match="trainable-blocks must be a whole number of at least 0, not '2'"):
        FinetuneConfig.from_dict({"method": "classify", "source": "m", "trainable_blocks": "2"}).resolved()
