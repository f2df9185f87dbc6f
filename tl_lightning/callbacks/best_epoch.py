"""The epoch whose validation made the best checkpoint, for summary.json and the end-of-run table."""

import math
from typing import Any, Dict, Optional

import lightning as L


def new_best(trainer, previous: Optional[float]) -> Optional[float]:
    """The monitored score when this validation makes a new best checkpoint, else None (``previous``: the best
    score so far). Decided as ModelCheckpoint decides (strictly better in its mode, so a tie keeps the earlier
    checkpoint), not read from it: Lightning runs checkpoint callbacks after every other callback, and saves at
    the end of the training epoch, so while other callbacks run its best score is still the one before."""
    ckpt = trainer.checkpoint_callback
    if trainer.sanity_checking or ckpt is None or ckpt.monitor is None:
        return None
    current = trainer.callback_metrics.get(ckpt.monitor)
    if current is None or math.isnan(float(current)):
        return None
    current = float(current)
    better = previous is None or (current > previous if ckpt.mode == "max" else current < previous)
    return current if better else None


class BestEpoch(L.Callback):
    def __init__(self):
        self.epoch: Optional[int] = None
        self.score: Optional[float] = None

    def on_validation_end(self, trainer, pl_module) -> None:
        score = new_best(trainer, self.score)
        if score is not None:
            self.score, self.epoch = score, trainer.current_epoch

    def state_dict(self) -> Dict[str, Any]:  # kept in last.ckpt: a resumed run still knows its best epoch
        return {"epoch": self.epoch, "score": self.score}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.epoch, self.score = state.get("epoch"), state.get("score")
