"""Criteria by name: what training, evaluation loss and Fisher estimates all use.

The long-tail criteria read the training split's class counts (``counts``): ``class_balanced`` (cross-entropy
weighted by the inverse class frequency, or by the inverse effective number of samples (1 - beta^n) / (1 - beta)
of Cui et al. 2019), ``focal`` (Lin et al. 2017: (1 - p_t)^gamma down-weights easy samples; optionally class
weighted), ``logit_adjusted`` (Menon et al. 2021: cross-entropy on logits + tau * log prior; predictions stay the
plain argmax) and ``balanced_softmax`` (Ren et al. 2020: logits + log n_c, the same as logit adjustment with tau 1).
``group_dro`` weighs the data's groups (slices) instead: see ``GroupDRO``.
"""

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tl_lightning.errors import ConfigError
from tl_lightning.registry import CRITERIA

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
        if target.is_floating_point() and self.weight is not None:
            # soft targets (Mixup): normalised by the targets' total weight, as PyTorch normalises hard labels, so a
            # one-hot target gives the hard-label loss
            k = logits.shape[-1]
            soft = target * (1.0 - self.label_smoothing) + self.label_smoothing / k
            weighted = soft * self.weight
            return -(weighted * F.log_softmax(logits, dim=-1)).sum() / (target * self.weight).sum()
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


class GroupDRO(nn.Module):
    """Group DRO (Sagawa et al. 2020): the loss is a weighted sum of per-group mean losses, the weights q updated
    online by exponentiated gradient ascent, q_g <- q_g * exp(eta * (loss_g + C / sqrt(n_g))) then normalised, so
    the worst groups get the weight. Called with the batch's groups in training (``uses_groups``); without groups
    (validation, Fisher estimates) it is the plain mean cross-entropy. q is a buffer: kept in checkpoints."""

    uses_groups = True

    def __init__(self, num_groups: int, eta: float, adjustment: float = 0.0, group_counts=None):
        super().__init__()
        self.eta = eta
        self.register_buffer("q", torch.full((num_groups,), 1.0 / num_groups))
        n = torch.as_tensor(list(group_counts) if group_counts is not None else [1] * num_groups, dtype=torch.float32)
        self.register_buffer("adjust", adjustment / n.clamp(min=1).sqrt(), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, group: Optional[torch.Tensor] = None) -> torch.Tensor:
        losses = F.cross_entropy(logits, target, reduction="none")
        if group is None or not bool((group >= 0).any()):
            return losses.mean()
        known = group >= 0
        g, losses = group[known], losses[known]
        size = self.q.numel()
        count = torch.bincount(g, minlength=size).float()
        mean = torch.zeros(size, dtype=losses.dtype, device=losses.device).index_add(0, g, losses) / count.clamp(min=1)
        present = count > 0
        if self.training:
            with torch.no_grad():
                step = torch.where(present, self.eta * (mean.detach() + self.adjust), torch.zeros_like(mean))
                q = self.q * torch.exp(step)
                self.q.copy_(q / q.sum())
        return (self.q * mean * present).sum() / (self.q * present).sum()


def _needs_counts(name: str, counts) -> Sequence[int]:
    if counts is None:
        raise ConfigError(f"loss={name} needs the training split's class counts (none were given to it)")
    return counts


@CRITERIA.register("ce")
def _cross_entropy(cfg, counts=None, group_counts=None) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


@CRITERIA.register("class_balanced")
def _class_balanced(cfg, counts=None, group_counts=None) -> nn.Module:
    weighting = cfg.weighting if cfg.weighting != "none" else "effective"
    return WeightedCrossEntropy(class_weights(_needs_counts("class_balanced", counts), weighting, cfg.beta),
                                cfg.label_smoothing)


@CRITERIA.register("focal")
def _focal(cfg, counts=None, group_counts=None) -> nn.Module:
    weight = class_weights(_needs_counts("focal", counts), cfg.weighting, cfg.beta) if cfg.weighting != "none" else None
    return FocalLoss(cfg.gamma, weight)


@CRITERIA.register("logit_adjusted")
def _logit_adjusted(cfg, counts=None, group_counts=None) -> nn.Module:
    return LogitAdjustedLoss(_needs_counts("logit_adjusted", counts), cfg.tau, cfg.label_smoothing)


@CRITERIA.register("balanced_softmax")
def _balanced_softmax(cfg, counts=None, group_counts=None) -> nn.Module:
    return LogitAdjustedLoss(_needs_counts("balanced_softmax", counts), 1.0, cfg.label_smoothing)


@CRITERIA.register("group_dro")
def _group_dro(cfg, counts=None, group_counts=None) -> nn.Module:
    if group_counts is None:
        raise ConfigError("loss=group_dro needs groups in the data: data.shortcut.kind=tint|patch (or a data source "
                          "with group labels)")
    return GroupDRO(len(group_counts), cfg.eta, cfg.group_adjustment, group_counts)


def build_criterion(cfg, counts: Optional[Sequence[int]] = None,
                    group_counts: Optional[Sequence[int]] = None) -> nn.Module:
    """``criterion(logits, target)`` -> mean loss, for the ``loss`` config node ``cfg`` (a criterion registered with
    ``@CRITERIA.register(name)``); ``counts``: training
    samples per class (the long-tail criteria need them); ``group_counts``: per group (Group DRO)."""
    return CRITERIA.get(cfg.name)(cfg, counts, group_counts)
