"""The epoch whose validation made the best checkpoint, for summary.json and the end-of-run table."""

from typing import Any, Dict, Optional

import lightning as L


def new_best(trainer, previous: Optional[float]) -> Optional[float]:
    """The best checkpoint's score when this validation has just made a new best checkpoint, else None.
    ModelCheckpoint (it runs before the callbacks that ask) keeps the earlier checkpoint on a tie, so only a
    changed best score marks a new best."""
    ckpt = trainer.checkpoint_callback
    if trainer.sanity_checking or ckpt is None or ckpt.best_model_score is None:
        return None
    score = float(ckpt.best_model_score)
    return score if previous is None or score != previous else None


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
