"""Continue pretraining: the same next-token loss on a new text, from a trained model, with a
lower learning rate (nanoGPT's fine-tune-on-Shakespeare recipe). The text is split as the
trainer splits it (its end held out) and encoded with the model's own tokenizer."""

from __future__ import annotations

from lm import distributed
from lm.data import encode_corpus, random_batch, split_tokens
from lm.finetune.methods import Method, step_generator
from lm.generate import Sampling, generate
from lm.trainer import read_text

VAL_FRACTION = 0.1
SAMPLE_TOKENS = 100


class Continue(Method):
    def __init__(self, cfg, model, tokenizer):
        super().__init__(cfg, model, tokenizer)
        ids = encode_corpus(read_text(cfg.data), tokenizer)
        self.train_ids, self.val_ids = split_tokens(ids, VAL_FRACTION, self.block_size)

    def _loss(self, x, y):
        return self.model(x.to(self.device), y.to(self.device)).loss, x.numel()

    def batch_loss(self, step):
        windows = random_batch(self.train_ids, self.cfg.batch_size * self.world.size, self.block_size,
                               step_generator(self.cfg.seed, step))
        loss, tokens = self._loss(*(distributed.own_share(w, self.world) for w in windows))
        return loss, {}, tokens

    def evaluate(self):
        """The mean loss on the same held-out windows every time, so evaluations compare."""
        windows = step_generator(self.cfg.seed, -1)
        total = sum(self._loss(*random_batch(self.val_ids, self.cfg.batch_size, self.block_size, windows))[0].item()
                    for _ in range(self.cfg.eval_batches))
        return {"val_loss": total / self.cfg.eval_batches}

    def _continuation(self) -> tuple[str, str]:
        prompt = [int(i) for i in self.val_ids[:16]]
        settings = Sampling(temperature=0.8, top_k=40, max_new_tokens=SAMPLE_TOKENS, seed=self.cfg.seed)
        text = "".join(step.text for step in generate(self.model, self.tokenizer, prompt, settings, explain=False))
        return self.tokenizer.decode(prompt), text

    def report(self):
        prompt, response = self._continuation()
        return {"val_loss": self.evaluate()["val_loss"], "examples": [{"prompt": prompt, "expected": "", "response": response}],
                "exact_match": None}

    def sample(self):
        prompt, response = self._continuation()
        return prompt + response
