"""Freeze the backbone (weights and BatchNorm statistics) and train only the new head.

The training samples are deterministic by default (``strategy.augment=none`` is what ``data.augment`` follows), so
the frozen backbone runs once over every split and the head is fitted on the cached features
(tl_lightning/features.py): with ``strategy.probe=lbfgs`` (the default) as an L2-regularised logistic regression to
convergence, C chosen on validation (tl_lightning/strategies/lbfgs_probe.py), in one epoch that validates and
checkpoints it; with ``strategy.probe=sgd`` by the run's optimizer over its epochs.
"""

import logging

from tl_lightning.errors import ConfigError
from tl_lightning.features import FeatureDataModule, load_or_build
from tl_lightning.registry import STRATEGIES
from tl_lightning.strategies.base import Strategy, set_trainable
from tl_lightning.strategies.capabilities import SolvedHead, WrapsData
from tl_lightning.strategies.lbfgs_probe import StopAfterSolvedEpoch, probe_head

log = logging.getLogger(__name__)


@STRATEGIES.register()
class LinearProbe(Strategy, WrapsData, SolvedHead):
    name = "linear_probe"

    def __init__(self, cfg, context=None):
        super().__init__(cfg, context)
        self.probe_record = None  # the L-BFGS fit's C, validation accuracy and grid

    def setup(self, module) -> None:
        set_trainable(module.backbone, False)
        set_trainable(module.head, True)

    def param_groups(self, module):
        return [self.head_group(module)]

    def on_train_mode(self, module) -> None:
        module.backbone.eval()

    def callbacks(self) -> list:
        return [StopAfterSolvedEpoch(self)]

    def wrap_datamodule(self, datamodule, module):
        lbfgs = self.cfg.probe == "lbfgs"
        if not self.cfg.cache_features or not datamodule.train_is_deterministic:
            why = ("strategy.cache_features=false" if not self.cfg.cache_features else
                   f"data.augment={datamodule.augment} changes the training samples every epoch")
            if lbfgs:  # the schema's check catches the usual cases; this one covers any datamodule
                raise ConfigError(f"strategy.probe=lbfgs fits the head on cached features, and {why}: use "
                                  "data.augment=none (and strategy.cache_features=true), or strategy.probe=sgd")
            log.info("features are not cached: %s", why)
            return datamodule
        tensors, how = load_or_build(module.backbone, datamodule, self.context.paths.cache_dir,
                                     self.context.eval_batch_size)
        module.read_features(True)
        if lbfgs and self.probe_record is None:
            self.probe_record = probe_head(module, tensors, self.cfg)
        self.head_solved = lbfgs
        return FeatureDataModule(tensors, datamodule, how)

    def state_dict(self):
        return {"probe": self.probe_record}

    def load_state_dict(self, state) -> None:
        self.probe_record = state.get("probe")

    def summary_info(self):
        return self.probe_record or {"probe": "sgd"}
