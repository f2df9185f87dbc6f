"""Classification metrics for one evaluation stage, all from torchmetrics."""

from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score


class StageMetrics(nn.Module):
    """Accuracy, balanced accuracy (the mean of per-class recalls) and macro-F1 (logged as scalars), per-class
    accuracy and a confusion matrix."""

    def __init__(self, stage: str, num_classes: int):
        super().__init__()
        self.stage = stage
        self.scalars = MetricCollection(
            {"acc": MulticlassAccuracy(num_classes, average="micro"),
             "acc_balanced": MulticlassAccuracy(num_classes, average="macro"),  # mean per-class recall
             "f1_macro": MulticlassF1Score(num_classes, average="macro")},
            prefix=f"{stage}/",
        )
        self.per_class = MulticlassAccuracy(num_classes, average=None)
        self.confusion = MulticlassConfusionMatrix(num_classes)

    def names(self, class_names) -> set:
        """The names this stage logs (scalars, loss, per-class accuracy)."""
        return {*self.scalars.keys(), f"{self.stage}/loss", *(f"{self.stage}/acc_class/{c}" for c in class_names)}

    def update(self, logits, target) -> None:
        preds = logits.argmax(dim=-1)
        self.scalars.update(preds, target)
        self.per_class.update(preds, target)
        self.confusion.update(preds, target)

    def reset(self) -> None:
        self.scalars.reset()
        self.per_class.reset()
        self.confusion.reset()


def log_stage_end(module, metrics: StageMetrics, class_names, present=None) -> None:
    """At the end of an evaluation epoch: log the stage's scalars and per-class accuracy (of the classes in
    ``present`` only, when given: data that holds a subset of the model's classes), then reset."""
    module.log_dict(metrics.scalars.compute(), sync_dist=False, prog_bar=True)
    per_class = metrics.per_class.compute()
    for i, (name, value) in enumerate(zip(class_names, per_class)):
        if present is None or i in present:
            module.log(f"{metrics.stage}/acc_class/{name}", value)
    metrics.reset()
