"""L2-SP (Li, Grandvalet, Davoine 2018): alpha/2 ||w_S - w0_S||^2 + beta/2 ||w_new||^2.

w_S are the backbone's weights, w0_S their pretrained values, w_new the new head's weights (the beta
term replaces the optimizer's weight decay on the head)."""

from tl_lightning.registry import STRATEGIES
from tl_lightning.strategies.anchored import AnchoredStrategy


@STRATEGIES.register()
class L2SP(AnchoredStrategy):
    name = "l2sp"

    def param_groups(self, module):
        return self.backbone_groups(module, weight_decay=0.0) + [{**self.head_group(module), "weight_decay": 0.0}]

    def penalty(self, module):
        head = 0.5 * self.cfg.beta * sum((p ** 2).sum() for n, p in module.head.named_parameters() if n.endswith("weight"))
        return self.anchor_penalty(module) + head
