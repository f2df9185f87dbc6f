"""Criteria by name: what training, evaluation loss and Fisher estimates all use.

The long-tail criteria read the training split's class counts (``counts``): ``class_balanced`` (cross-entropy
weighted by the inverse class frequency, or by the inverse effective number of samples (1 - beta^n) / (1 - beta)
of Cui et al. 2019), ``focal`` (Lin et al. 2017: (1 - p_t)^gamma down-weights easy samples; optionally class
weighted), ``logit_adjusted`` (Menon et al. 2021: cross-entropy on logits + tau * log prior; predictions stay the
plain argmax) and ``balanced_softmax`` (Ren et al. 2020: logits + log n_c, the same as logit adjustment with tau 1).
"""

from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tl_lightning.errors import ConfigError, unknown_name

WEIGHTINGS = ("none", "inverse", "effective")


def class_weights(counts: Sequence[int], weighting: str, beta: float) -> Optional[torch.Tensor]:
    """Per-class loss weights, normalised to average 1 over the classes (None for weighting=none)."""
    if weighting == "none":
        return None
    n = torch.as_tensor(list(counts), dtype=torch.float64).clamp(min=1)
    raw = 1.0 / n if weighting == "inverse" else (1.0 - beta) / (1.0 - beta ** n)
    return (raw * len(raw) / raw.sum()).float()


class WeightedCrossEntropy(nn.Module):
    def __init__(self, weight: Optional[torch.Tensor], label_smoothing: float = 0.0):
        super().__init__()
        self.register_buffer("weight", weight, persistent=False)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, weight=self.weight, label_smoothing=self.label_smoothing)


class FocalLoss(nn.Module):
    def __init__(self, gamma: float, weight: Optional[torch.Tensor] = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)
        loss = -((1.0 - log_p.exp()) ** self.gamma) * log_p
        if self.weight is not None:
            w = self.weight[target]
            return (w * loss).sum() / w.sum()
        return loss.mean()


class LogitAdjustedLoss(nn.Module):
    def __init__(self, counts: Sequence[int], tau: float, label_smoothing: float = 0.0):
        super().__init__()
        prior = torch.as_tensor(list(counts), dtype=torch.float32).clamp(min=1)
        self.register_buffer("offset", tau * torch.log(prior / prior.sum()), persistent=False)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits + self.offset, target, label_smoothing=self.label_smoothing)


def _needs_counts(name: str, counts) -> Sequence[int]:
    if counts is None:
        raise ConfigError(f"loss={name} needs the training split's class counts (none were given to it)")
    return counts


def _cross_entropy(cfg, counts=None) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


def _class_balanced(cfg, counts=None) -> nn.Module:
    weighting = cfg.weighting if cfg.weighting != "none" else "effective"
    return WeightedCrossEntropy(class_weights(_needs_counts("class_balanced", counts), weighting, cfg.beta),
                                cfg.label_smoothing)


def _focal(cfg, counts=None) -> nn.Module:
    weight = class_weights(_needs_counts("focal", counts), cfg.weighting, cfg.beta) if cfg.weighting != "none" else None
    return FocalLoss(cfg.gamma, weight)


def _logit_adjusted(cfg, counts=None) -> nn.Module:
    return LogitAdjustedLoss(_needs_counts("logit_adjusted", counts), cfg.tau, cfg.label_smoothing)


def _balanced_softmax(cfg, counts=None) -> nn.Module:
    return LogitAdjustedLoss(_needs_counts("balanced_softmax", counts), 1.0, cfg.label_smoothing)


CRITERIA: Dict[str, Callable[..., nn.Module]] = {
    "ce": _cross_entropy, "class_balanced": _class_balanced, "focal": _focal, "logit_adjusted": _logit_adjusted,
    "balanced_softmax": _balanced_softmax,
}


def build_criterion(cfg, counts: Optional[Sequence[int]] = None) -> nn.Module:
    """``criterion(logits, target)`` -> mean loss, for the ``loss`` config node ``cfg``; ``counts``: training
    samples per class (the long-tail criteria need them)."""
    if cfg.name not in CRITERIA:
        raise unknown_name("loss", cfg.name, CRITERIA, "loss.name")
    return CRITERIA[cfg.name](cfg, counts)
