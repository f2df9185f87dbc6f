"""The epoch whose validation made the best checkpoint, for summary.json and the end-of-run table."""

from typing import Any, Dict, Optional

import lightning as L


class BestEpoch(L.Callback):
    def __init__(self):
        self.epoch: Optional[int] = None

    def on_validation_end(self, trainer, pl_module) -> None:
        ckpt = trainer.checkpoint_callback  # runs before this callback: it has just decided about this epoch
        if trainer.sanity_checking or ckpt is None or ckpt.current_score is None or ckpt.best_model_score is None:
            return
        if bool(ckpt.current_score == ckpt.best_model_score):
            self.epoch = trainer.current_epoch

    def state_dict(self) -> Dict[str, Any]:  # kept in last.ckpt: a resumed run still knows its best epoch
        return {"epoch": self.epoch}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.epoch = state.get("epoch")
