"""Fine-tuning a checkpoint: continue pretraining on a new text, classify (a new head),
instruct (supervised fine-tuning on prompt/response pairs) and dpo (preference tuning), each
optionally through LoRA adapters; every method writes an ordinary run folder."""
