"""A compact, from-scratch GPT toolkit: BPE tokenizer, data, and (soon) model, trainer, generator.

Nothing here imports the app; everything is usable from Python and `python -m lm`."""
