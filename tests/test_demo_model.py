"""The demo model shipped in models/: small, loadable, as good as its record says, and the
model the Attention and Generate pages open by default."""

import pytest
import torch

from lm.checkpoint import load_checkpoint
from lm.data import encode_corpus, random_batch, split_tokens
from lm.trainer import TrainConfig
from tests.conftest import REPO, open_page

DEMO = REPO / "models" / "shakespeare-demo"


@pytest.fixture(scope="module")
def demo():
    return load_checkpoint(DEMO)


def test_demo_is_small_enough_for_the_repository():
    assert sum(f.stat().st_size for f in DEMO.iterdir()) <= 10 * 2**20


@pytest.mark.slow
def test_demo_validation_loss_is_what_its_config_records(demo, shakespeare_text):
    """Recomputed the trainer's way: the same held-out windows (seeded), in eval mode."""
    cfg = TrainConfig.from_dict(demo.training["config"])
    _, val = split_tokens(encode_corpus(shakespeare_text, demo.tokenizer), cfg.val_fraction, cfg.block_size)
    windows = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        losses = [demo.model(*random_batch(val, cfg.batch_size, cfg.block_size, windows)).loss.item()
                  for _ in range(cfg.eval_batches)]
    assert sum(losses) / len(losses) == pytest.approx(demo.training["val_loss"], rel=1e-4)
    assert demo.training["val_loss"] < 4.0  # a blind guess over 1,024 tokens scores ln(1024) = 6.9


@pytest.mark.parametrize("page", ["app_pages/generate.py", "app_pages/attention.py"])
def test_pages_open_the_demo_by_default(app_dirs, monkeypatch, page):
    monkeypatch.setenv("LM_BUNDLED_MODELS", str(DEMO.parent))
    at = open_page(page)
    assert at.selectbox[0].value == "shakespeare-demo"
