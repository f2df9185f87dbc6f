"""Fairness between the values of a sensitive attribute, for classifiers with any number of classes.

The attribute comes from the data's groups: the shortcut benchmark's (class, aligned|conflicting) groups give the
attribute aligned/conflicting (``group % 2``); a text CSV's group column is the attribute itself. Multi-class tasks
are measured one class against the rest, and the largest gap over the classes is reported:

- demographic parity difference: max over classes c of the spread (max - min over attribute values) of the rate
  of predicting c;
- equalized odds difference: max over classes c of the larger of the spreads of the true-positive rate and of
  the false-positive rate of predicting c.

The metrics are fairlearn's own functions (``demographic_parity_difference``, ``equalized_odds_difference``) on
each one-vs-rest binary task. The loss terms (``loss.terms.<name>={kind: demographic_parity|equalized_odds,
weight: w}``) are their differentiable counterparts on predicted probabilities in the batch.
"""

from typing import Dict, Optional

import numpy as np
import torch

from tl_lightning.losses.terms import LossTerm
from tl_lightning.registry import LOSS_TERMS


def gaps(y_true: np.ndarray, y_pred: np.ndarray, attribute: np.ndarray, num_classes: int) -> Dict[str, float]:
    """fairlearn's demographic parity and equalized odds differences, one class against the rest, largest over
    the classes (the binary task's own values for two classes)."""
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    keep = attribute >= 0
    y_true, y_pred, attribute = y_true[keep], y_pred[keep], attribute[keep]
    if len(np.unique(attribute)) < 2:
        return {}
    classes = [1] if num_classes == 2 else range(num_classes)
    dp, eo = 0.0, 0.0
    for c in classes:
        t, p = (y_true == c).astype(int), (y_pred == c).astype(int)
        dp = max(dp, float(demographic_parity_difference(t, p, sensitive_features=attribute)))
        if t.any() and (1 - t).any():
            eo = max(eo, float(equalized_odds_difference(t, p, sensitive_features=attribute)))
    return {"dp_gap": dp, "eo_gap": eo}


def _spread(values: torch.Tensor, attribute: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per column: max - min over attribute values of the mean of ``values`` (rows where ``mask``)."""
    means = []
    for v in torch.unique(attribute):
        rows = attribute == v if mask is None else (attribute == v) & mask
        if rows.any():
            means.append(values[rows].mean(0))
    if len(means) < 2:
        return values.new_zeros(values.shape[1:])
    stacked = torch.stack(means)
    return stacked.max(0).values - stacked.min(0).values


def soft_dp_gap(probs: torch.Tensor, attribute: torch.Tensor) -> torch.Tensor:
    return _spread(probs, attribute).max()


def soft_eo_gap(probs: torch.Tensor, target: torch.Tensor, attribute: torch.Tensor) -> torch.Tensor:
    worst = probs.new_zeros(())
    for c in range(probs.shape[1]):
        positive = target == c
        tpr = _spread(probs[:, c:c + 1], attribute, positive)
        fpr = _spread(probs[:, c:c + 1], attribute, ~positive)
        worst = torch.maximum(worst, torch.maximum(tpr, fpr).squeeze(0))
    return worst


class FairnessTerm(LossTerm):
    """weight x a differentiable gap between the sensitive attribute's values in the batch (None without groups)."""

    def __init__(self, name: str, kind: str, weight: float):
        self.name, self.kind, self.weight = name, kind, weight

    def __call__(self, module, batch, logits: torch.Tensor) -> Optional[torch.Tensor]:
        attribute_of_group = module.task.group_attribute  # the run's task description (tl_lightning/task.py)
        group = batch.get("group")
        if attribute_of_group is None or group is None:
            return None
        known = group >= 0
        if not bool(known.any()):
            return None
        attribute = torch.as_tensor(attribute_of_group, dtype=torch.long, device=group.device)[group[known]]
        probs = torch.softmax(logits[known].float(), dim=-1)
        gap = soft_dp_gap(probs, attribute) if self.kind == "demographic_parity" else \
            soft_eo_gap(probs, batch["target"][known], attribute)
        return self.weight * gap


@LOSS_TERMS.register("demographic_parity")
def _demographic_parity(name: str, node) -> LossTerm:
    return FairnessTerm(name, "demographic_parity", float(node.get("weight", 1.0)))


@LOSS_TERMS.register("equalized_odds")
def _equalized_odds(name: str, node) -> LossTerm:
    return FairnessTerm(name, "equalized_odds", float(node.get("weight", 1.0)))
