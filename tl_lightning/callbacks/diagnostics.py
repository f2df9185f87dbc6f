"""Watching a run for signs that transfer is going wrong (docs/diagnostics.md), each a warning line once and an
entry of ``diagnostics`` in summary.json:

- ``callbacks.collapse``: the predictions collapse onto a few classes. Every validation epoch logs ``val/pred_tv``
  (total-variation distance between the predicted-class histogram and the validation label histogram) and
  ``val/top_class_share`` (StageMetrics.diagnostics); the warning comes the first epoch ``pred_tv`` reaches
  ``max_tv`` (default 0.5: at least half of the predictions would have to change class to match the labels'
  prior; a model predicting one class for everything on balanced 10-class data scores 0.9).
- ``callbacks.plateau``: the monitored metric (``optimized_metric``) falls for ``patience`` epochs in a row after
  its best (overfitting or forgetting), or has not moved by more than ``min_delta`` from the first epoch's value
  after ``patience`` epochs (nothing is learnt: learning rate, a frozen backbone, labels).
"""

import logging
from typing import Any, Dict, List, Optional

import lightning as L

log = logging.getLogger(__name__)


def _value(trainer, name: str) -> Optional[float]:
    value = trainer.callback_metrics.get(name)
    return None if value is None else float(value)


class CollapseWatch(L.Callback):
    def __init__(self, max_tv: float = 0.5):
        self.max_tv = max_tv
        self.history: List[Dict[str, float]] = []
        self.warning: Optional[Dict[str, Any]] = None

    def on_validation_end(self, trainer, pl_module) -> None:
        tv, share = _value(trainer, "val/pred_tv"), _value(trainer, "val/top_class_share")
        if trainer.sanity_checking or tv is None:
            return
        epoch = trainer.current_epoch
        self.history.append({"epoch": epoch, "pred_tv": round(tv, 4), "top_class_share": round(share, 4)})
        if self.warning is None and tv >= self.max_tv:
            self.warning = {"epoch": epoch, "pred_tv": tv, "top_class_share": share}
            log.warning("predictions are collapsing at epoch %d: their class histogram is %.2f (total variation) "
                        "from the validation labels' (threshold %.2f), and one class takes %.0f %% of them; "
                        "lower the learning rate, or rebalance a long-tailed budget (data.sampler=balanced, "
                        "loss=logit_adjusted)", epoch, tv, self.max_tv, 100 * share)

    def summary_sections(self) -> Dict[str, Any]:
        return {"diagnostics": {"collapse": self.summary()}}

    def summary(self) -> Dict[str, Any]:
        return {"max_tv": self.max_tv, "warning": self.warning, "per_epoch": self.history}


class PlateauWatch(L.Callback):
    def __init__(self, monitor: str, mode: str = "max", patience: int = 3, min_delta: float = 0.005):
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.values: List[float] = []
        self.events: List[Dict[str, Any]] = []

    def _gain(self, new: float, old: float) -> float:
        return new - old if self.mode == "max" else old - new

    def on_validation_end(self, trainer, pl_module) -> None:
        value = _value(trainer, self.monitor)
        if trainer.sanity_checking or value is None:
            return
        self.values.append(value)
        epoch, kinds = trainer.current_epoch, {e["kind"] for e in self.events}
        values, n = self.values, self.patience
        best = max(range(len(values)), key=lambda k: self._gain(values[k], values[0]))
        if "drop" not in kinds and len(values) - 1 - best >= n and \
                all(self._gain(values[k], values[k + 1]) > 0 for k in range(len(values) - n - 1, len(values) - 1)):
            self._event("drop", epoch, f"{self.monitor} has fallen for {n} epochs since its best, "
                        f"{values[best]:.4f} at epoch {best} (now {value:.4f} at epoch {epoch}): overfitting or "
                        "forgetting; the best checkpoint is kept, early stopping or a lower learning rate would help",
                        best_epoch=best, best=values[best], value=value)
        if "flat" not in kinds and len(values) == n + 1 and \
                all(abs(self._gain(v, values[0])) <= self.min_delta for v in values[1:]):
            self._event("flat", epoch, f"{self.monitor} has not moved by more than {self.min_delta} from epoch 0's "
                        f"{values[0]:.4f} in {n} epochs (now {value:.4f} at epoch {epoch}): nothing is being learnt; "
                        "check the learning rate, what is frozen, and the labels", first=values[0], value=value)

    def _event(self, kind: str, epoch: int, message: str, **values) -> None:
        self.events.append({"kind": kind, "epoch": epoch, "metric": self.monitor, **values})
        log.warning(message)

    def summary(self) -> Dict[str, Any]:
        return {"metric": self.monitor, "events": self.events}

    def summary_sections(self) -> Dict[str, Any]:
        return {"diagnostics": {"plateau": self.summary()}}
