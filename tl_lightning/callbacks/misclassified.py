"""Misclassified validation examples of text runs: text, true class, predicted class and its probability.

Rows are gathered during each validation epoch and kept when that epoch's checkpoint became the best one, so
``<run dir>/misclassified_val.csv`` (and, at the end of fit, the W&B table ``val/misclassified``) describe the
model that is tested. Lists at most ``max_rows`` examples, the most confident mistakes first.
"""

import csv
import io
import os
from typing import List, Tuple

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from tl_lightning.atomic import atomic_write
from tl_lightning.callbacks.best_epoch import new_best

COLUMNS = ("source", "text", "true", "predicted", "confidence")


class MisclassifiedExamples(L.Callback):
    def __init__(self, output_dir: str, max_rows: int = 200):
        self.path = os.path.join(output_dir, "misclassified_val.csv")
        self.max_rows = max_rows
        self.epoch_rows: List[Tuple[int, int, int, float]] = []
        self.best_rows: List[tuple] = []
        self.best_score = None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.epoch_rows = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.sanity_checking or outputs is None:
            return
        probs = torch.softmax(outputs.float(), dim=-1)
        confidence, predicted = probs.max(-1)
        wrong = (predicted != batch["target"]).nonzero().flatten().tolist()
        self.epoch_rows += [(int(batch["index"][k]), int(batch["target"][k]), int(predicted[k]), float(confidence[k]))
                            for k in wrong]

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        if trainer.checkpoint_callback is not None:  # keep the rows of the epoch that made the best checkpoint
            score = new_best(trainer, self.best_score)
            if score is None:
                return
            self.best_score = score
        if not trainer.is_global_zero:
            return
        source = trainer.datamodule.unwrapped.datasets["val"].source  # cached features: the text datamodule behind
        names = pl_module.class_names
        rows = sorted(self.epoch_rows, key=lambda r: -r[3])[: self.max_rows]
        self.best_rows = [(source.name(i) if source else str(i), source.sample(i) if source else "", names[t], names[p],
                           round(c, 4)) for i, t, p, c in rows]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        writer.writerows(self.best_rows)
        atomic_write(self.path, buffer.getvalue())

    def state_dict(self):  # a resumed run compares with the best score before the interruption
        return {"best_score": self.best_score}

    def load_state_dict(self, state) -> None:
        self.best_score = state.get("best_score")

    def on_fit_end(self, trainer, pl_module) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and trainer.is_global_zero:
                logger.log_table(key="val/misclassified", columns=list(COLUMNS), data=[list(r) for r in self.best_rows])
