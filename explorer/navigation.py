"""The app's pages in one list: app.py builds the navigation from it, Home its cards."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageInfo:
    path: str
    title: str
    icon: str
    teaches: str


HOME = PageInfo("app_pages/home.py", "Home", "🏠", "")
PAGES = [
    PageInfo(
        "app_pages/tokenizer.py",
        "Tokenizer",
        "🔤",
        "How text becomes numbers: see GPT-2, GPT-4 and your own tokenizer cut the same text into "
        "tokens, then train a byte-pair encoder and replay every merge it learned.",
    ),
    PageInfo(
        "app_pages/train.py",
        "Train",
        "📈",
        "How a model learns: train a small GPT on a text of your choice and watch its loss fall, "
        "its learning rate and gradients change, and its writing improve, live.",
    ),
    PageInfo(
        "app_pages/attention.py",
        "Attention",
        "🎯",
        "Where each token looks: a model's attention maps for your text, every head at a glance, the "
        "arithmetic of one head step by step, and what the model is made of.",
    ),
    PageInfo(
        "app_pages/inside.py",
        "Inside the model",
        "🔬",
        "What the model does with what it sees: its guess after every layer, which head or MLP pushes "
        "a prediction, which activation causes the answer (patching), its token embeddings and neurons.",
    ),
    PageInfo(
        "app_pages/generate.py",
        "Generate",
        "✍️",
        "How a model writes: watch it pick one token at a time, see the probabilities behind each pick "
        "and how temperature, top-k and top-p reshape them, and measure how surprised it is by any text.",
    ),
    PageInfo(
        "app_pages/finetune.py",
        "Fine-tune",
        "🎛️",
        "What fine-tuning changes: start from a pretrained model, teach it to classify messages, follow "
        "instructions or prefer one answer to another, with or without LoRA, and compare it before and after.",
    ),
]

