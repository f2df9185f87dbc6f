"""Fine-tune everything from the pretrained weights; the backbone may take a smaller lr."""

from tl_lightning.strategies.base import Strategy, set_trainable


class Finetune(Strategy):
    name = "finetune"

    def setup(self, module) -> None:
        set_trainable(module, True)

    def param_groups(self, module):
        return [self.backbone_group(module), self.head_group(module)]
