"""Mixup and CutMix (``callbacks.mixup``): each training batch of images is mixed with itself reversed (timm's
``Mixup``, mode ``batch``: one mixing ratio per batch, Mixup or CutMix chosen per batch with ``switch_prob``), and
its soft targets (``batch["soft_target"]``) replace the labels in the criterion (tl_lightning/losses/terms.py); the
criteria that cannot take them are refused before training. Training accuracy and the loss terms still read the
hard labels. numpy's stream, which timm draws from, is reseeded from (seed, epoch) at every epoch start, so a
resumed run mixes as the uninterrupted one does. A batch of odd size (an epoch's last) is not mixed.
"""

from typing import Any, Dict

import lightning as L
import numpy as np


class MixupCutmix(L.Callback):
    def __init__(self, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, prob: float = 1.0,
                 switch_prob: float = 0.5, seed: int = 0):
        self.options = {"mixup_alpha": mixup_alpha, "cutmix_alpha": cutmix_alpha, "prob": prob,
                        "switch_prob": switch_prob}
        self.seed = seed
        self.mix = None
        self.mixed_batches = 0

    def setup(self, trainer, pl_module, stage: str) -> None:
        from timm.data import Mixup

        self.mix = Mixup(**self.options, mode="batch", label_smoothing=0.0, num_classes=pl_module.task.num_classes)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        np.random.seed((self.seed * 100_003 + trainer.current_epoch * 7 + trainer.global_rank * 1_000_003) % 2 ** 32)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        target = batch["target"]
        if len(target) % 2:
            return
        batch["inputs"], batch["soft_target"] = self.mix(batch["inputs"], target)
        self.mixed_batches += 1

    def summary_sections(self) -> Dict[str, Any]:
        return {"mixup": {**self.options, "mixed_batches": self.mixed_batches}}
