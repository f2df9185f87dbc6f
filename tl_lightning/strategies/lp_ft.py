"""LP-FT (Kumar et al. 2022): train a linear probe first, then fine-tune everything from that head
with a smaller learning rate, so the random head does not distort the pretrained features.

``strategy.probe=lbfgs`` (the default): the probe is the linear probe's L-BFGS fit (tl_lightning/strategies/
lbfgs_probe.py) on the frozen features of train and val before the first step, and every epoch fine-tunes.
``strategy.probe=sgd``: the probe trains at ``strategy.lr`` for ``lp_epochs`` (or until ``lp_patience``)."""

from typing import Any, Dict

from tl_lightning.registry import STRATEGIES
from tl_lightning.strategies.lbfgs_probe import ProbeBeforeFit
from tl_lightning.strategies.staged import Phase, StagedStrategy


@STRATEGIES.register()
class LPFT(StagedStrategy):
    name = "lp_ft"

    def __init__(self, cfg, context=None):
        super().__init__(cfg, context)
        self.probe_record = None  # the L-BFGS probe's C, validation accuracy and grid

    def backbone_lr(self) -> float:
        return self.cfg.ft_lr  # the backbone's lr in the fine-tuning phase (layer_decay applies)

    def plan(self, module) -> None:
        cfg = self.cfg
        self.units_from_layer_groups(module)
        fine_tune = Phase(list(self.units), head_lr=cfg.ft_lr if cfg.ft_head_lr is None else cfg.ft_head_lr)
        if cfg.probe == "lbfgs":
            self.phases = [fine_tune]
        else:
            self.phases = [Phase([], max_epochs=cfg.lp_epochs, patience=cfg.lp_patience), fine_tune]

    def callbacks(self) -> list:
        return super().callbacks() + ([ProbeBeforeFit(self)] if self.cfg.probe == "lbfgs" else [])

    def state_dict(self) -> Dict[str, Any]:
        return {**super().state_dict(), "probe": self.probe_record}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.probe_record = state.get("probe")

    def summary_info(self) -> Dict[str, Any]:
        return {**super().summary_info(), "probe": self.probe_record or {"probe": "sgd"}}
