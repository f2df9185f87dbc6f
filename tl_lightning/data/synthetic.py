"""Seeded synthetic images: each class a smooth colour pattern plus noise. For tests and benchmarks."""

import numpy as np

from tl_lightning.data.base import RawData, TransferDataModule
from tl_lightning.data.sources import ArraySource
from tl_lightning.registry import DATAMODULES

PATTERN_SEED = 12345  # the class patterns stay fixed; data.seed only moves the noise and splits


@DATAMODULES.register()
class SyntheticDataModule(TransferDataModule):
    name = "synthetic"

    def load(self) -> RawData:
        cfg = self.cfg
        size, channels, k, n = cfg.native_size, cfg.channels, cfg.num_classes, cfg.per_class
        patterns = np.random.default_rng(PATTERN_SEED).uniform(40, 215, size=(k, 4, 4, channels))
        # upsample the 4x4 patterns to the image size (nearest) to get smooth class templates
        reps = -(-size // 4)
        templates = patterns.repeat(reps, axis=1).repeat(reps, axis=2)[:, :size, :size]
        rng = np.random.default_rng(cfg.seed)
        labels = np.repeat(np.arange(k), n)
        images = templates[labels] + rng.normal(0, 30, size=(k * n, size, size, channels))
        images = np.clip(images, 0, 255).astype(np.uint8)
        return RawData(train=ArraySource(images, labels, "synthetic"), class_names=[f"class{c}" for c in range(k)])
