"""scratchllm: build a GPT-style language model from scratch with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
