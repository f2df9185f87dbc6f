"""Classification metrics for one evaluation stage, all from torchmetrics."""

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from tl_lightning.losses.fairness import gaps

DIAGNOSTICS = ("pred_tv", "top_class_share", "ece")  # logged by every evaluation stage (StageMetrics.diagnostics)


class GroupAccuracy(Metric):
    """Accuracy per group (slice) of the data; samples without a group (-1) are left out. Summed across ranks."""

    def __init__(self, num_groups: int):
        super().__init__()
        self.num_groups = num_groups
        self.add_state("correct", default=torch.zeros(num_groups), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(num_groups), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, group: torch.Tensor) -> None:
        known = group >= 0
        g = group[known]
        self.correct += torch.bincount(g, weights=(preds[known] == target[known]).float(), minlength=self.num_groups)
        self.total += torch.bincount(g, minlength=self.num_groups).float()

    def compute(self) -> torch.Tensor:
        """Per-group accuracy; NaN for a group with no sample."""
        return self.correct / self.total


class FairnessGaps(Metric):
    """The epoch's predictions, targets and sensitive attribute (gathered across ranks), for fairlearn's
    demographic parity and equalized odds differences (tl_lightning/losses/fairness.py)."""

    def __init__(self, num_classes: int, attribute_of_group):
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("attribute_of_group", torch.as_tensor(attribute_of_group, dtype=torch.long),
                             persistent=False)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.add_state("attribute", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor, group: torch.Tensor) -> None:
        known = group >= 0
        self.preds.append(preds[known])
        self.target.append(target[known])
        self.attribute.append(self.attribute_of_group.to(group.device)[group[known]])

    def compute(self) -> dict:
        from torchmetrics.utilities import dim_zero_cat

        if not self.preds:
            return {}
        return gaps(dim_zero_cat(self.target).cpu().numpy(), dim_zero_cat(self.preds).cpu().numpy(),
                    dim_zero_cat(self.attribute).cpu().numpy(), self.num_classes)


class StageMetrics(nn.Module):
    """Accuracy, balanced accuracy (the mean of per-class recalls) and macro-F1 (logged as scalars), per-class
    accuracy and a confusion matrix."""

    def __init__(self, stage: str, num_classes: int, group_names=(), attribute_of_group=None):
        super().__init__()
        self.stage = stage
        self.group_names = list(group_names)
        self.groups = GroupAccuracy(len(self.group_names)) if self.group_names else None
        self.gaps = FairnessGaps(num_classes, attribute_of_group) if self.group_names and attribute_of_group is not None \
            else None
        # validate_args=False: the datamodules' labels are in range by construction, and torchmetrics' check
        # (torch.unique on targets and predictions) would synchronise with the GPU on every batch
        self.scalars = MetricCollection(
            {"acc": MulticlassAccuracy(num_classes, average="micro", validate_args=False),
             "acc_balanced": MulticlassAccuracy(num_classes, average="macro", validate_args=False),  # mean recall
             "f1_macro": MulticlassF1Score(num_classes, average="macro", validate_args=False)},
            prefix=f"{stage}/",
        )
        self.per_class = MulticlassAccuracy(num_classes, average=None, validate_args=False)
        self.confusion = MulticlassConfusionMatrix(num_classes, validate_args=False)
        # expected calibration error: |confidence - accuracy| over 15 equal-width confidence bins, weighted by size
        self.calibration = MulticlassCalibrationError(num_classes, n_bins=15, norm="l1", validate_args=False)

    def names(self, class_names) -> set:
        """The names this stage logs (scalars, loss, per-class accuracy; with groups, the worst and mean group
        accuracy and, in test, each group's)."""
        names = {*self.scalars.keys(), f"{self.stage}/loss", *(f"{self.stage}/acc_class/{c}" for c in class_names),
                 *(f"{self.stage}/{k}" for k in DIAGNOSTICS)}
        if self.groups is not None:
            names |= {f"{self.stage}/worst_group_acc", f"{self.stage}/mean_group_acc"}
            if self.gaps is not None:
                names |= {f"{self.stage}/dp_gap", f"{self.stage}/eo_gap"}
            if self.stage == "test":
                names |= {f"test/acc_group/{g}" for g in self.group_names}
        return names

    def update(self, logits, target, group=None) -> None:
        preds = logits.argmax(dim=-1)
        self.scalars.update(preds, target)
        self.per_class.update(preds, target)
        self.confusion.update(preds, target)
        self.calibration.update(logits.detach().float().softmax(dim=-1), target)
        if self.groups is not None and group is not None:
            self.groups.update(preds, target, group)
            if self.gaps is not None:
                self.gaps.update(preds, target, group)

    def group_scalars(self) -> dict:
        if self.groups is None:
            return {}
        acc = self.groups.compute()
        seen = acc[~torch.isnan(acc)]
        if not len(seen):
            return {}
        out = {f"{self.stage}/worst_group_acc": seen.min(), f"{self.stage}/mean_group_acc": seen.mean()}
        if self.gaps is not None:
            out.update({f"{self.stage}/{k}": torch.tensor(v) for k, v in self.gaps.compute().items()})
        if self.stage == "test":
            out.update({f"test/acc_group/{g}": a for g, a in zip(self.group_names, acc) if not torch.isnan(a)})
        return out

    def diagnostics(self) -> dict:
        """How far the predictions are from the labels' prior, and calibration (docs/diagnostics.md):
        ``pred_tv``, the total-variation distance between the predicted-class histogram and the label histogram
        (0: predicted as often as they occur; 1 - 1/C: one class predicted for everything), ``top_class_share``, the
        most predicted class's share of the predictions, and ``ece``."""
        confusion = self.confusion.compute().float()  # rows: true class, columns: predicted
        total = confusion.sum().clamp(min=1)
        predicted, actual = confusion.sum(dim=0) / total, confusion.sum(dim=1) / total
        return {f"{self.stage}/pred_tv": 0.5 * (predicted - actual).abs().sum(),
                f"{self.stage}/top_class_share": predicted.max(),
                f"{self.stage}/ece": self.calibration.compute()}

    def reset(self) -> None:
        self.scalars.reset()
        self.per_class.reset()
        self.confusion.reset()
        self.calibration.reset()
        if self.groups is not None:
            self.groups.reset()
        if self.gaps is not None:
            self.gaps.reset()


def log_stage_end(module, metrics: StageMetrics, class_names, present=None) -> None:
    """At the end of an evaluation epoch: log the stage's scalars and per-class accuracy (of the classes in
    ``present`` only, when given: data that holds a subset of the model's classes), then reset."""
    module.log_dict(metrics.scalars.compute(), sync_dist=False, prog_bar=True)
    module.log_dict(metrics.diagnostics(), sync_dist=False)
    for name, value in metrics.group_scalars().items():
        module.log(name, value, prog_bar=name.endswith("worst_group_acc"))
    per_class = metrics.per_class.compute()
    for i, (name, value) in enumerate(zip(class_names, per_class)):
        if present is None or i in present:
            module.log(f"{metrics.stage}/acc_class/{name}", value)
    metrics.reset()
