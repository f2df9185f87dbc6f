"""Criteria by name: what training, evaluation loss and Fisher estimates all use."""

from typing import Callable, Dict

from torch import nn

from tl_lightning.errors import unknown_name


def _cross_entropy(cfg) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


CRITERIA: Dict[str, Callable[..., nn.Module]] = {"ce": _cross_entropy}


def build_criterion(cfg) -> nn.Module:
    """``criterion(logits, target)`` -> mean loss, for the ``loss`` config node ``cfg``."""
    if cfg.name not in CRITERIA:
        raise unknown_name("loss", cfg.name, CRITERIA, "loss.name")
    return CRITERIA[cfg.name](cfg)
