"""Fine-tune everything from the pretrained weights; the backbone may take a smaller lr, and with
strategy.layer_decay < 1 lower layers smaller still (layer-wise lr decay)."""

from tl_lightning.registry import STRATEGIES
from tl_lightning.strategies.base import Strategy, set_trainable


@STRATEGIES.register()
class Finetune(Strategy):
    name = "finetune"

    def setup(self, module) -> None:
        set_trainable(module, True)
        self.freeze_norms(module)

    def param_groups(self, module):
        return self.backbone_groups(module) + [self.head_group(module)]
