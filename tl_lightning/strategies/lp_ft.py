"""LP-FT (Kumar et al. 2022): train a linear probe first, then fine-tune everything from that head
with a smaller learning rate, so the random head does not distort the pretrained features."""

from tl_lightning.registry import STRATEGIES
from tl_lightning.strategies.staged import Phase, StagedStrategy


@STRATEGIES.register()
class LPFT(StagedStrategy):
    name = "lp_ft"

    def backbone_lr(self) -> float:
        return self.cfg.ft_lr  # the backbone's lr in the fine-tuning phase (layer_decay applies)

    def plan(self, module) -> None:
        cfg = self.cfg
        self.units_from_layer_groups(module)
        self.phases = [
            Phase([], max_epochs=cfg.lp_epochs, patience=cfg.lp_patience),
            Phase(list(self.units), head_lr=cfg.ft_lr if cfg.ft_head_lr is None else cfg.ft_head_lr),
        ]
