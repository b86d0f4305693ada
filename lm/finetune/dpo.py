"""Direct preference optimisation (Rafailov et al. 2023): for a prompt with a chosen and a
rejected response, raise the chosen one's log-probability relative to a frozen reference copy
of the starting model, and lower the rejected one's:

    loss = -log sigmoid(beta * [(log p(chosen) - log p_ref(chosen)) - (log p(rejected) - log p_ref(rejected))])

where log p(response) sums the log-probabilities of the response tokens only (the prompt is
the same for both). beta * (log p - log p_ref) is each response's implicit reward; the reward
margin (chosen less rejected) should grow as the model learns the preference."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from lm.finetune.data import load_preferences, split_examples
from lm.finetune.instruct import generated_examples
from lm.finetune.methods import Method, step_generator
from lm.finetune.prompts import pad_batch, response_mask
from lm.generate import end_of_text_id


def sequence_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[B]: each row's log-probability of its targets, summed where the target is not -1."""
    counted = targets != -1
    picked = logits.log_softmax(-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * counted).sum(-1)


def dpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, dict]:
    """The mean DPO loss over a batch of summed log-probabilities, and what to log about it."""
    chosen_reward, rejected_reward = beta * (chosen - ref_chosen), beta * (rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_reward - rejected_reward).mean()
    measures = {"reward_margin": (chosen_reward - rejected_reward).mean().item(),
                "reward_accuracy": (chosen_reward > rejected_reward).float().mean().item(),
                "chosen_logp": chosen.mean().item(), "rejected_logp": rejected.mean().item()}
    return loss, measures


class DPO(Method):
    def __init__(self, cfg, model, tokenizer):
        super().__init__(cfg, model, tokenizer)
        self.splits = split_examples(load_preferences(cfg.data, progress=True), cfg.seed)
        self.pairs = {name: [(response_mask(tokenizer, e, e.chosen, self.block_size),
                              response_mask(tokenizer, e, e.rejected, self.block_size)) for e in part]
                      for name, part in self.splits.items()}
        self.pad = end_of_text_id(tokenizer)
        self.reference = copy.deepcopy(model).eval().requires_grad_(False)  # the starting model, frozen

    def to(self, device):
        super().to(device)
        self.reference.to(device)

    def _logprobs(self, model, pairs) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Summed response log-probabilities of the chosen and the rejected responses, one pass."""
        x, y = pad_batch([c for c, _ in pairs] + [r for _, r in pairs], self.pad)
        logps = sequence_logprobs(model(x.to(self.device)).logits, y.to(self.device))
        return logps[: len(pairs)], logps[len(pairs):], x.numel()

    def _loss(self, pairs) -> tuple[torch.Tensor, dict, int]:
        chosen, rejected, tokens = self._logprobs(self.model, pairs)
        with torch.no_grad():
            ref_chosen, ref_rejected, _ = self._logprobs(self.reference, pairs)
        loss, measures = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.cfg.beta)
        return loss, measures, tokens

    def batch_loss(self, step):
        self.model.eval()  # no dropout: the policy and the reference must score the same way
        generator = step_generator(self.cfg.seed, step)
        rows = self.own_share(lambda n: torch.randint(len(self.pairs["train"]), (n,), generator=generator))
        return self._loss([self.pairs["train"][i] for i in rows])

    def _measure(self, split: str) -> dict:
        pairs, sums, n = self.pairs[split], {}, 0
        for start in range(0, len(pairs), self.cfg.batch_size):
            batch = pairs[start : start + self.cfg.batch_size]
            loss, measures, _ = self._loss(batch)
            for key, value in {"loss": loss.item(), **measures}.items():
                sums[key] = sums.get(key, 0.0) + value * len(batch)
            n += len(batch)
        return {key: value / n for key, value in sums.items()}

    def evaluate(self):
        measures = self._measure("val")
        return {"val_loss": measures.pop("loss"), **{f"val_{k}": v for k, v in measures.items()}}

    def report(self):
        measures = self._measure("test")
        return {"examples": generated_examples(self.model, self.tokenizer, self.splits["test"], lambda e: e.chosen),
                "exact_match": None, **measures}
