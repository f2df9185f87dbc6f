"""Loss terms: each sees ``(module, batch, logits)``, returns a tensor (added to the loss and logged as
``train/<name>``) or None (nothing this step).

In a training step the batch also holds ``features`` (the labelled inputs' backbone features the head saw) and,
with data.unlabeled, its ``unlabeled`` part (tl_lightning/data/unlabeled.py). Terms come from two places and
combine: ``loss.terms.<name>: {kind: <registered kind>, ...}`` in the
config, and ``Strategy.loss_terms()`` (EWC's and L2-SP's penalties). A new kind is a function
registered with ``@LOSS_TERMS.register("kind")`` that takes (name, config node) and returns a LossTerm.
"""

from typing import Dict, List, Optional, Tuple

import torch
from omegaconf import OmegaConf

from tl_lightning.config.terms import TERM_SCHEMAS
from tl_lightning.errors import ConfigError, unknown_name
from tl_lightning.registry import LOSS_TERMS


class LossTerm:
    """Base class; subclasses set ``name`` and implement ``__call__``."""

    name = "term"

    def attach(self, feature_dim: int, num_classes: int) -> None:
        """Called once the module knows its sizes, before training: a term with parameters of its own (an
        ``nn.Module``, e.g. a domain classifier) builds them here; the module then trains and checkpoints them."""

    def __call__(self, module, batch, logits: torch.Tensor) -> Optional[torch.Tensor]:
        raise NotImplementedError


def build_terms(terms_cfg) -> List[LossTerm]:
    """The terms of ``loss.terms`` (a mapping name -> node with ``kind``; a null node is switched off)."""
    terms = []
    for name, node in (terms_cfg or {}).items():
        if node is None:
            continue
        kind = node.get("kind") if hasattr(node, "get") else None
        if kind is None:
            raise ConfigError(f"config key 'loss.terms.{name}': needs a 'kind'; registered kinds: "
                              f"{', '.join(LOSS_TERMS.names(discover=True)) or '(none)'}")
        if kind not in LOSS_TERMS.names(discover=True):
            raise unknown_name("loss term kind", kind, LOSS_TERMS.names(), f"loss.terms.{name}.kind")
        if kind in TERM_SCHEMAS:  # the package's kinds: their node with the schema's defaults
            node = OmegaConf.merge(OmegaConf.structured(TERM_SCHEMAS[kind]), node)
        terms.append(LOSS_TERMS.get(kind)(name, node))
    names = [t.name for t in terms]
    if len(set(names)) != len(names):
        raise ConfigError(f"loss terms need distinct names, got {names}")
    return terms


def total_loss(criterion, terms: List[LossTerm], module, batch, logits) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """criterion + every term that answers; returns (loss, {part name: value}) for logging."""
    if getattr(criterion, "uses_groups", False):  # Group DRO weighs the batch's groups
        loss = criterion(logits, batch["target"], batch.get("group"))
    else:  # soft targets (Mixup / CutMix, callbacks.mixup) where the batch has them
        loss = criterion(logits, batch.get("soft_target", batch["target"]))
    parts = {"criterion": loss}
    for term in terms:
        value = term(module, batch, logits)
        if value is not None:
            parts[term.name] = value
            loss = loss + value
    return loss, parts
