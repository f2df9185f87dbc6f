"""The strategy contract: what trains when, at which learning rate, and what joins the loss."""

from typing import Any, Dict, List, Optional

import torch
from torch import nn


class Strategy:
    """Base class. One subclass per file, registered by name in ``registry.py``."""

    name = "base"
    uses_pretrained = True  # False: the backbone starts from random weights whatever backbone.pretrained says
    caches_features = False  # True: the backbone is frozen and deterministic, so features may be cached

    def __init__(self, cfg):
        self.cfg = cfg

    def setup(self, module: nn.Module) -> None:
        """Set ``requires_grad`` on the module's parameters before training starts."""

    def param_groups(self, module: nn.Module) -> List[Dict[str, Any]]:
        """Optimizer parameter groups (each with 'params', 'lr' and a 'name')."""
        raise NotImplementedError

    def penalty(self, module: nn.Module) -> Optional[torch.Tensor]:
        """A term added to the training loss, or None."""
        return None

    def callbacks(self) -> list:
        return []

    def on_train_mode(self, module: nn.Module) -> None:
        """Called whenever the module is put into train mode: keep frozen parts in eval mode here."""

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass

    # helpers shared by strategies
    def head_group(self, module: nn.Module) -> Dict[str, Any]:
        return {"name": "head", "params": list(module.head.parameters()), "lr": self.cfg.lr}

    def backbone_group(self, module: nn.Module) -> Dict[str, Any]:
        params = [p for p in module.backbone.parameters() if p.requires_grad]
        return {"name": "backbone", "params": params, "lr": self.cfg.lr * self.cfg.backbone_lr_mult}


def set_trainable(module: nn.Module, trainable: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(trainable)
