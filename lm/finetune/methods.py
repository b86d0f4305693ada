"""What a fine-tuning method gives the shared loop (lm.finetune.loop), and the registry of them.

A method holds the model (it may add a head), reads its data when built, and answers: a
training batch's loss for a step (batches are a function of the seed and the step, so a
resumed run draws the ones it would have; with several processes, its own share of it),
validation measures, the evaluation.json report
and, where it makes sense, a sample of text."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch

from lm import distributed
from lm.distributed import World
from lm.finetune.config import FinetuneConfig
from lm.model import GPT


class Method(ABC):
    world = World()  # which training process of how many (lm.distributed): the loop sets it

    def __init__(self, cfg: FinetuneConfig, model: GPT, tokenizer):
        self.cfg, self.model, self.tokenizer, self.device = cfg, model, tokenizer, "cpu"
        self.block_size = model.config.block_size

    def own_share(self, draw: Callable[[int], torch.Tensor]) -> torch.Tensor:
        """This process's share of a step's batch, which `draw(n)` makes of n rows: batch_size rows
        per process, drawn alike by every process (as lm train does), so together they train on
        what one process with batch_size x processes would."""
        return distributed.own_share(draw(self.cfg.batch_size * self.world.size), self.world)

    def new_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters the method adds, which train whatever else is frozen."""
        return []

    def to(self, device: str) -> None:
        self.device = device

    @abstractmethod
    def batch_loss(self, step: int) -> tuple[torch.Tensor, dict, int]:
        """The loss of step's batch, the measures to log with it, and the tokens it read."""

    @abstractmethod
    def evaluate(self) -> dict:
        """{"val_loss": ..., and the method's own measures} on held-out data."""

    @abstractmethod
    def report(self) -> dict:
        """The model measured on the test data, for evaluation.json."""

    def sample(self) -> str | None:
        return None


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random draws of one step's batch: the same for the same seed and step."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def build_method(cfg: FinetuneConfig, model: GPT, tokenizer) -> Method:
    from lm.finetune.classify import Classify
    from lm.finetune.continue_ import Continue
    from lm.finetune.dpo import DPO
    from lm.finetune.instruct import Instruct

    kinds = {"classify": Classify, "continue": Continue, "instruct": Instruct, "dpo": DPO}
    return kinds[cfg.method](cfg, model, tokenizer)
