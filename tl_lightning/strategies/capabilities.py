"""Optional strategy capabilities: what only some strategies do, each a small base class a reader sees in the
strategy's class line (``class ProtoNet(Strategy, OwnTrainingLoss, WrapsData)``) and the module checks with
``isinstance``. The hooks every strategy uses stay on ``Strategy`` (base.py).
"""

import os
from typing import Any, Dict


class OwnTrainingLoss:
    """The strategy computes the training loss itself (e.g. episodes), instead of the criterion on the logits."""

    def training_loss(self, module, batch) -> Dict[str, Any]:
        """{'loss': tensor, 'acc': tensor} of one training batch."""
        raise NotImplementedError


class WrapsData:
    """The strategy trains on another datamodule built around the target's (episodes, cached features)."""

    def wrap_datamodule(self, datamodule, module):
        """The datamodule fit uses; a ``tl_lightning.data.wrapped.WrappedDataModule`` (or ``datamodule``)."""
        raise NotImplementedError


class SolvedHead:
    """The strategy solves for the head before fit (the L-BFGS linear probe on cached features). While
    ``head_solved``, training batches are scored but not stepped, and fit ends after the epoch that validates and
    checkpoints the solution."""

    head_solved = False


class PartialCheckpoints:
    """Checkpoints hold part of the module's state (adapters and head, not the frozen base)."""

    def checkpoint_keys(self, module, state: Dict[str, Any]) -> Dict[str, Any]:
        raise NotImplementedError

    def check_checkpoint(self, module, state: Dict[str, Any]) -> None:
        """Raise when a checkpoint's state dict lacks what this strategy saves."""
        raise NotImplementedError

    def adapter_record(self) -> Any:
        """What rebuilds the rest of the model (recorded under tl_lightning.adapter)."""
        raise NotImplementedError


TERM_MODULES = "term_modules."  # the loss terms' own parameters (TransferModule.term_modules): always kept


def checkpoint_state(strategy, module, state: Dict[str, Any]) -> Dict[str, Any]:
    """The part of ``state`` a checkpoint of this strategy holds."""
    if not isinstance(strategy, PartialCheckpoints):
        return state
    return {**strategy.checkpoint_keys(module, state), **{k: v for k, v in state.items() if k.startswith(TERM_MODULES)}}


def checkpoint_size(module, path: str) -> Dict[str, Any]:
    """Bytes of weights a checkpoint holds (all, or adapters + head for adapter checkpoints) against the full
    model's, and the size of the checkpoint file."""
    state = module.state_dict()
    kept = checkpoint_state(module.strategy, module, state)
    full = sum(t.numel() * t.element_size() for t in state.values())
    weights = sum(t.numel() * t.element_size() for t in kept.values())
    return {"file_bytes": os.path.getsize(path) if path and os.path.isfile(path) else None,
            "weights_bytes": weights, "full_weights_bytes": full, "weights_share": weights / max(1, full)}
