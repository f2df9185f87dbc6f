"""The strategy contract: what trains when, at which learning rate, and what joins the loss.

The hooks here are the ones every strategy uses; what only some do (own training loss, wrapped data, partial
checkpoints) is an optional capability in capabilities.py. A strategy registers itself in its own file
(``@STRATEGIES.register()``) and gets the run's context (tl_lightning.context.RunContext) when it is built.
"""

from typing import Any, Dict, List

from torch import nn


class Strategy:
    """Base class. One subclass per file, registered by name with ``@STRATEGIES.register()``."""

    name = "base"
    uses_pretrained = True  # False: the backbone starts from random weights whatever backbone.pretrained says
    staged = False  # True: phases change per-group learning rates (lr_factor)

    def __init__(self, cfg, context=None):
        self.cfg = cfg
        # the run's context: the target datamodule, the source task of backbone=checkpoint, data and cache paths
        self.context = context
        self.fit_info: Dict[str, Any] = {}

    def module_parameters(self) -> Dict[str, nn.Parameter]:
        """Parameters of the strategy's own that the module holds (and checkpoints), registered before setup."""
        return {}

    def setup(self, module: nn.Module) -> None:
        """Set ``requires_grad`` on the module's parameters before training starts."""

    def param_groups(self, module: nn.Module) -> List[Dict[str, Any]]:
        """Optimizer parameter groups (each with 'params', 'lr' and a 'name')."""
        raise NotImplementedError

    def lr_factor(self, group: Dict[str, Any], step: int) -> float:
        """A per-group multiplier on top of the schedule (phases, warmup of unfrozen groups)."""
        return 1.0

    def configure_schedule(self, scheduler_cfg, total_steps: int, max_epochs: int) -> bool:
        """True when ``lr_factor`` carries the warmup and decay itself (per-phase schedules), so the
        optimizer's scheduler adds none over the run."""
        return False

    def loss_terms(self) -> list:
        """Loss terms (tl_lightning.losses.LossTerm) this strategy adds to the criterion; called after setup."""
        return []

    def callbacks(self) -> list:
        return []

    def on_train_mode(self, module: nn.Module) -> None:
        """Called whenever the module is put into train mode: keep frozen parts in eval mode here.
        The base keeps the backbone's BatchNorm layers in eval mode under ``bn=freeze_stats|freeze``."""
        if self.cfg.bn != "train":
            for m in norm_layers(module.backbone):
                m.eval()

    def freeze_norms(self, module: nn.Module) -> None:
        """``bn=freeze``: the backbone's BatchNorm affine parameters never train (call after unfreezing)."""
        if self.cfg.bn == "freeze":
            for m in norm_layers(module.backbone):
                set_trainable(m, False)

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass

    def restore(self, module: nn.Module) -> None:
        """After ``load_state_dict`` (resume, or testing a checkpoint): re-apply the trainable set."""

    def summary_info(self) -> Dict[str, Any]:
        """What summary.json's strategy_info reports for this strategy, as fit ends."""
        return {}

    def on_fit_end(self, module: nn.Module) -> None:
        """Fit has ended: the summary reports the strategy as it is now (testing may load a checkpoint's state)."""
        self.fit_info = self.summary_info()

    def summary_sections(self) -> Dict[str, Any]:
        return {"strategy_info": self.fit_info}

    # helpers shared by strategies
    def head_group(self, module: nn.Module) -> Dict[str, Any]:
        return {"name": "head", "params": list(module.head.parameters()), "lr": self.cfg.lr}

    def backbone_lr(self) -> float:
        return self.cfg.lr * self.cfg.backbone_lr_mult

    def backbone_groups(self, module: nn.Module, only_trainable: bool = True, **extra) -> List[Dict[str, Any]]:
        """One optimizer group per backbone layer group; with layer_decay < 1 the lr shrinks by
        ``layer_decay ** depth`` from the top group (depth 0) down to the stem."""
        decay = self.cfg.layer_decay
        groups = module.backbone.layer_groups
        out = []
        for depth, group in enumerate(reversed(groups)):
            params = [p for p in group.params if p.requires_grad or not only_trainable]
            if params:
                out.append({"name": f"backbone.{group.name}", "layer_group": group.name, "params": params,
                            "lr": self.backbone_lr() * decay ** depth, **extra})
        return out[::-1]


def set_trainable(module: nn.Module, trainable: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(trainable)


def norm_layers(module: nn.Module) -> List[nn.Module]:
    """The BatchNorm layers of ``module`` (the ``bn`` policy's subject)."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
