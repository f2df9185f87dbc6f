"""EWC (Kirkpatrick et al. 2017): lambda/2 * sum_i F_i (theta_i - theta*_i)^2 over the backbone.

F is the empirical Fisher diagonal (mean squared gradient of the loss), estimated when training starts:
- ``fisher_source=source`` (or ``auto`` with backbone=checkpoint whose checkpoint records its data
  config): on the source task's training split, with the source head;
- ``target`` (``auto`` otherwise): on the target training split at the pretrained weights, with the
  freshly initialised head;
- ``uniform``: F = 1, which makes EWC the anchor term of L2-SP.
``fisher_batch_size=1`` gives per-sample squared gradients; larger batches are faster and approximate
(B * squared batch-mean gradient). ``normalize`` rescales F to mean 1, so ``lam`` is on L2-SP's scale.
Online EWC: when the source checkpoint was itself trained with EWC, F <- gamma * F_old + F_new.
The estimate is made on rank 0's data and broadcast, so all DDP ranks use the same F.
"""

import logging
from typing import List, Optional

import lightning as L
import torch
from torch import nn

from tl_lightning.batch import batch_size, device_batches
from tl_lightning.data import build_datamodule
from tl_lightning.errors import ConfigError
from tl_lightning.registry import STRATEGIES
from tl_lightning.strategies.anchored import AnchoredStrategy

log = logging.getLogger(__name__)


@STRATEGIES.register()
class EWC(AnchoredStrategy):
    name = "ewc"
    strength_key = "lam"

    def __init__(self, cfg, context=None):
        super().__init__(cfg, context)
        self.fisher_from = ""

    def callbacks(self) -> list:
        return [FisherCallback(self)]

    def state_dict(self):
        return {**super().state_dict(), "fisher_from": self.fisher_from}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.fisher_from = state.get("fisher_from", "")

    def summary_info(self):
        return {"fisher_from": self.fisher_from} if self.fisher_from else {}

    @property
    def source(self):
        """The source task of backbone=checkpoint (None otherwise)."""
        return self.context.source if self.context is not None else None

    def resolve_source(self) -> str:
        choice = self.cfg.fisher_source
        has_source = self.source is not None and self.source.data_config is not None
        if choice == "source" and not has_source:
            raise ConfigError("strategy.fisher_source=source needs backbone=checkpoint with a checkpoint made by this "
                              "harness (it records the source data config); use auto, target or uniform")
        if choice == "auto":
            return "source" if has_source else "target"
        return choice

    def estimate(self, module: nn.Module) -> None:
        where = self.resolve_source()
        self.fisher_from = where
        if where == "uniform":
            self.weights = None
            return
        device = next(module.parameters()).device
        if where == "source":
            from omegaconf import OmegaConf

            dm = build_datamodule(OmegaConf.create(self.source.data_config), module.backbone.preprocessing,
                                  self.context.paths)
            dm.setup("fit")
            head = self.source.head.to(device)
        else:
            dm, head = self.context.datamodule, module.head
        loader = dm.plain_loader("train", self.cfg.fisher_batch_size, limit=self.cfg.fisher_samples)
        fisher = empirical_fisher(module.backbone, head, loader, module.criterion, device)
        if self.cfg.normalize:
            mean = torch.cat([f.reshape(-1) for f in fisher]).mean().clamp_min(1e-30)
            fisher = [f / mean for f in fisher]
        old = (self.source.strategy_state.get("fisher") if self.source is not None else None)
        if old is not None and len(old) == len(fisher):
            fisher = [self.cfg.gamma * o.to(device) + f for o, f in zip(old, fisher)]
            self.fisher_from = f"{where}+online"
        self.weights = fisher
        log.info("EWC Fisher from %s data (%d samples): mean %.3g, max %.3g", where, len(loader.dataset),
                 float(torch.cat([f.reshape(-1) for f in fisher]).mean()), float(max(f.max() for f in fisher)))


def empirical_fisher(backbone: nn.Module, head: nn.Module, loader, criterion, device=None) -> List[torch.Tensor]:
    """Mean over batches of (batch size x squared gradient of the criterion), in eval mode."""
    params = list(backbone.parameters())
    fisher = [torch.zeros_like(p) for p in params]
    seen = 0
    for batch in device_batches(loader, [backbone, head], device, grad=True):
        n = batch_size(batch)
        loss = criterion(head(backbone(batch["inputs"])), batch["target"])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for f, g in zip(fisher, grads):
            if g is not None:
                f.add_(g.detach() ** 2, alpha=n)
        seen += n
    return [f / max(1, seen) for f in fisher]


class FisherCallback(L.Callback):
    """Estimates the Fisher when fit starts, unless a resumed checkpoint brought one."""

    def __init__(self, strategy: EWC):
        self.strategy = strategy

    def on_fit_start(self, trainer, pl_module) -> None:
        s = self.strategy
        if s.fisher_from:  # restored from the checkpoint
            return
        requires = [p.requires_grad for p in pl_module.backbone.parameters()]
        for p in pl_module.backbone.parameters():
            p.requires_grad_(True)
        s.estimate(pl_module)
        for p, r in zip(pl_module.backbone.parameters(), requires):
            p.requires_grad_(r)
        if trainer.world_size > 1:
            weights: Optional[List[torch.Tensor]] = trainer.strategy.broadcast(
                [w.cpu() for w in s.weights] if s.weights is not None else None, src=0)
            device = next(pl_module.parameters()).device
            s.weights = [w.to(device) for w in weights] if weights is not None else None
        if s.weights is not None:
            s.anchors = [a.to(s.weights[0].device) for a in s.anchors]
