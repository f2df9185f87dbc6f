"""Freeze the backbone (weights and BatchNorm statistics) and train only the new head.

With ``strategy.cache_features=true`` and deterministic training samples (data.augment=none), the frozen
backbone runs once over every split and the head trains on the cached features (tl_lightning/features.py).
"""

import logging

from tl_lightning.features import FeatureDataModule, load_or_build
from tl_lightning.registry import STRATEGIES
from tl_lightning.strategies.base import Strategy, set_trainable
from tl_lightning.strategies.capabilities import WrapsData

log = logging.getLogger(__name__)


@STRATEGIES.register()
class LinearProbe(Strategy, WrapsData):
    name = "linear_probe"

    def setup(self, module) -> None:
        set_trainable(module.backbone, False)
        set_trainable(module.head, True)

    def param_groups(self, module):
        return [self.head_group(module)]

    def on_train_mode(self, module) -> None:
        module.backbone.eval()

    def wrap_datamodule(self, datamodule, module):
        if not self.cfg.cache_features:
            return datamodule
        if not datamodule.train_is_deterministic:
            log.info("features are not cached: data.augment=%s changes the training samples every epoch",
                     datamodule.augment)
            return datamodule

        tensors, how = load_or_build(module.backbone, datamodule, self.context.paths.cache_dir,
                                     self.context.eval_batch_size)
        module.read_features(True)
        return FeatureDataModule(tensors, datamodule, how)
