"""Fine-tuning pulled back towards the starting weights (L2-SP, EWC).

The anchor is the backbone as it was when training started (the pretrained or source weights). The
penalty is ``strength/2 * sum_i w_i * (theta_i - anchor_i)**2`` over the backbone's parameters, with
``w_i = 1`` for L2-SP and the Fisher diagonal for EWC. Optimizer weight decay is off for the backbone
(it would pull towards zero instead of towards the anchor). Anchors (and the Fisher) are saved in the
checkpoint, so a resume continues with the same ones.
"""

from typing import Any, Dict, List, Optional

import torch
from torch import nn

from tl_lightning.losses import LossTerm
from tl_lightning.strategies.base import Strategy, set_trainable


class AnchoredStrategy(Strategy):
    strength_key = "alpha"

    def __init__(self, cfg, context=None):
        super().__init__(cfg, context)
        self.names: List[str] = []
        self.anchors: Optional[List[torch.Tensor]] = None
        self.weights: Optional[List[torch.Tensor]] = None  # None: uniform

    def setup(self, module: nn.Module) -> None:
        set_trainable(module, True)
        self.freeze_norms(module)
        named = list(module.backbone.named_parameters())
        self.names = [n for n, _ in named]
        self.anchors = [p.detach().clone() for _, p in named]

    def param_groups(self, module: nn.Module) -> List[Dict[str, Any]]:
        return self.backbone_groups(module, weight_decay=0.0) + [self.head_group(module)]

    def loss_terms(self) -> list:
        return [PenaltyTerm(self)]

    def penalty(self, module: nn.Module) -> torch.Tensor:
        return self.anchor_penalty(module)

    def _to(self, tensors: List[torch.Tensor], device) -> List[torch.Tensor]:
        if tensors and tensors[0].device != device:
            tensors[:] = [t.to(device) for t in tensors]
        return tensors

    def anchor_penalty(self, module: nn.Module) -> torch.Tensor:
        params = list(module.backbone.parameters())
        anchors = self._to(self.anchors, params[0].device)
        if self.weights is None:
            terms = [((p - a) ** 2).sum() for p, a in zip(params, anchors)]
        else:
            weights = self._to(self.weights, params[0].device)
            terms = [(w * (p - a) ** 2).sum() for p, a, w in zip(params, anchors, weights)]
        return 0.5 * getattr(self.cfg, self.strength_key) * torch.stack(terms).sum()

    def state_dict(self) -> Dict[str, Any]:
        state = {"names": self.names, "anchors": [a.cpu() for a in self.anchors or []]}
        if self.weights is not None:
            state["fisher"] = [w.cpu() for w in self.weights]
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state.get("names") != self.names:
            raise RuntimeError("the checkpoint's anchors belong to another backbone")
        self.anchors = list(state["anchors"])
        self.weights = list(state["fisher"]) if "fisher" in state else None


class PenaltyTerm(LossTerm):
    """The strategy's penalty as a loss term, logged as ``train/<strategy name>``."""

    def __init__(self, strategy: AnchoredStrategy):
        self.strategy = strategy
        self.name = strategy.name

    def __call__(self, module, batch, logits):
        return self.strategy.penalty(module)
