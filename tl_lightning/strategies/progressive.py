"""Gradual unfreezing (ULMFiT; the idea behind finetuning-scheduler): head first, then the backbone's
layer groups from the top down, each with a discriminative learning rate."""

from tl_lightning.errors import ConfigError
from tl_lightning.registry import STRATEGIES
from tl_lightning.strategies.staged import Phase, StagedStrategy


@STRATEGIES.register()
class Progressive(StagedStrategy):
    name = "progressive"

    def plan(self, module) -> None:
        cfg = self.cfg
        if cfg.schedule == "phases":
            if not cfg.phases:
                raise ConfigError("strategy.schedule=phases needs strategy.phases: a list of "
                                  "{groups: [layer groups or parameter regexes], lr, max_epochs, patience}")
            per_phase = self.units_from_selectors(module, [list(p.get("groups") or []) for p in cfg.phases])
            self.phases = [Phase(units, lr=p.get("lr"), head_lr=p.get("head_lr"), max_epochs=p.get("max_epochs"),
                                 patience=p.get("patience")) for units, p in zip(per_phase, cfg.phases)]
            return
        self.units_from_layer_groups(module)
        top_down = sorted(self.units, key=lambda name: self.units[name].depth)
        by_epochs = cfg.schedule == "epochs"
        every, per = cfg.unfreeze_every, cfg.groups_per_phase
        self.phases = [Phase([], max_epochs=every if by_epochs else None, patience=None if by_epochs else cfg.patience)]
        for start in range(0, len(top_down), per):
            self.phases.append(Phase(top_down[start: start + per], max_epochs=every if by_epochs else None,
                                     patience=None if by_epochs else cfg.patience))
