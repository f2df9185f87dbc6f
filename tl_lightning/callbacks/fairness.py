"""``callbacks.fairness``: watch a slice metric on validation (worst-group accuracy, a gap) and act when it degrades.

Degraded: worse than the best value seen by more than ``margin`` (in the metric's direction), or, for a gap
(``mode=min``), above ``max_gap``. After ``patience`` consecutive degraded epochs: ``warn`` (a log line),
``stop`` (fit ends; the best checkpoint is still the one tested), or ``rollback``: the weights of the best epoch
by this metric (kept in memory) are put back (the optimizer keeps its state), then training continues or ends
(``after_rollback``). Every action is logged with the epoch and the values, and listed in ``summary.json``
(``fairness_events``).
"""

import copy
import logging
from typing import Any, Dict, List, Optional

import lightning as L

log = logging.getLogger(__name__)


class FairnessMonitor(L.Callback):
    def __init__(self, monitor: str, mode: str = "max", max_gap: Optional[float] = None, margin: float = 0.05,
                 patience: int = 2, action: str = "warn", after_rollback: str = "continue"):
        self.monitor, self.mode, self.max_gap, self.margin = monitor, mode, max_gap, margin
        self.patience, self.action, self.after_rollback = patience, action, after_rollback
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.best_state: Optional[Dict[str, Any]] = None
        self.degraded = 0
        self.events: List[Dict[str, Any]] = []

    def _better(self, value: float, than: float) -> bool:
        return value > than if self.mode == "max" else value < than

    def _is_degraded(self, value: float) -> bool:
        if self.max_gap is not None and value > self.max_gap:
            return True
        return self.best is not None and (self.best - value if self.mode == "max" else value - self.best) > self.margin

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        epoch = trainer.current_epoch
        if self.best is None or self._better(value, self.best):
            self.best, self.best_epoch, self.degraded = value, epoch, 0
            if self.action == "rollback":
                self.best_state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
            return
        self.degraded = self.degraded + 1 if self._is_degraded(value) else 0
        if self.degraded < self.patience:
            return
        event = {"epoch": epoch, "action": self.action, "metric": self.monitor, "value": value, "best": self.best,
                 "best_epoch": self.best_epoch}
        if self.action == "stop":
            trainer.should_stop = True
        elif self.action == "rollback" and self.best_state is not None:
            pl_module.load_state_dict(copy.deepcopy(self.best_state))
            if self.after_rollback == "stop":
                trainer.should_stop = True
            event["then"] = self.after_rollback
        self.events.append(event)
        self.degraded = 0
        log.warning("fairness monitor: %s = %.4f at epoch %d, worse than its best %.4f (epoch %d) for %d epochs: %s%s",
                    self.monitor, value, epoch, self.best, self.best_epoch, self.patience, self.action,
                    f" to epoch {self.best_epoch}, then {self.after_rollback}" if self.action == "rollback" else "")
        for logger in trainer.loggers:
            logger.log_metrics({"fairness/action_epoch": float(epoch)}, step=trainer.global_step)

    def state_dict(self) -> Dict[str, Any]:  # the best weights stay in memory only: a resumed run starts afresh
        return {"best": self.best, "best_epoch": self.best_epoch, "events": self.events}

    def summary_sections(self) -> Dict[str, Any]:
        return {"fairness_events": self.events}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch")
        self.events = list(state.get("events", []))
