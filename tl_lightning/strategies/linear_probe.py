"""Freeze the backbone (weights and BatchNorm statistics) and train only the new head."""

from tl_lightning.strategies.base import Strategy, set_trainable


class LinearProbe(Strategy):
    name = "linear_probe"
    caches_features = True

    def setup(self, module) -> None:
        set_trainable(module.backbone, False)
        set_trainable(module.head, True)

    def param_groups(self, module):
        return [self.head_group(module)]

    def on_train_mode(self, module) -> None:
        module.backbone.eval()
