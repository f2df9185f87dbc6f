"""The strategy contract: what trains when, at which learning rate, and what joins the loss."""

from typing import Any, Dict, List, Optional

from torch import nn


class Strategy:
    """Base class. One subclass per file, registered by name in ``registry.py``."""

    name = "base"
    uses_pretrained = True  # False: the backbone starts from random weights whatever backbone.pretrained says
    caches_features = False  # True: the backbone is frozen and deterministic, so features may be cached
    staged = False  # True: phases change per-group learning rates (lr_factor)
    adapter_checkpoints = False  # True: checkpoints leave out the frozen base backbone (checkpoint_keys)

    def __init__(self, cfg):
        self.cfg = cfg
        self.source = None  # tl_lightning.inference.SourceTask, set by run.train for backbone=checkpoint
        self.datamodule = None  # set by run.train; strategies that estimate statistics read the data from it
        self.data_dir = "data"  # paths.data_dir, set by run.train

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

    def checkpoint_keys(self, module: nn.Module, state: Dict[str, Any]) -> Dict[str, Any]:
        """The part of the module's state dict a checkpoint holds (all of it, unless adapter_checkpoints)."""
        return state

    def check_checkpoint(self, module: nn.Module, state: Dict[str, Any]) -> None:
        """Raise when a checkpoint's state dict lacks what this strategy saves (with partial checkpoints only)."""

    def summary_info(self) -> Dict[str, Any]:
        """What summary.json's strategy_info reports for this strategy."""
        return {}

    def wrap_datamodule(self, datamodule):
        """The datamodule fit uses (e.g. episodes for training); the target datamodule by default."""
        return datamodule

    def training_loss(self, module: nn.Module, batch) -> Optional[Dict[str, Any]]:
        """A training loss of the strategy's own ({'loss', 'acc'}) instead of the criterion on the head's logits."""
        return None

    def fewshot_evaluation(self, module: nn.Module, datamodule) -> Optional[Dict[str, Any]]:
        """Evaluation after testing that belongs to the strategy (summary.json's 'fewshot')."""
        return None

    def adapter_record(self) -> Any:
        """What rebuilds the adapters of an adapter-only checkpoint (recorded under tl_lightning.adapter)."""
        return None

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
