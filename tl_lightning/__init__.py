"""tl-lightning: a Hydra + PyTorch Lightning harness for transfer-learning experiments."""

__version__ = "0.1.0"
