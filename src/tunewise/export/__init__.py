"""`tunewise export`: merged safetensors, GGUF, DEPLOY.md and MODEL_CARD.md for a trained run."""
