"""Averaged weights (``callbacks.weight_averaging``): an exponential moving average of the weights after every
optimizer step (EMA, with timm's warm-up of the decay), or the equal average of the weights at the end of each epoch
from ``start_epoch`` on (SWA), on top of Lightning's ``WeightAveraging`` (torch's ``AveragedModel``). Until the
first update (SWA before ``start_epoch``) the training weights are validated, checkpointed and kept.

The averaged weights are the ones validated, checkpointed (best.ckpt and last.ckpt's ``state_dict``) and tested;
last.ckpt also keeps the training weights (``current_model_state``) and the averaging state, so a resumed run goes on
exactly. Lightning's callback swaps the averaged weights in for validation and back right after it, which leaves
best.ckpt (saved weights-only, after validation, when callbacks' checkpoint hooks do not run) with the training
weights; here they stay swapped in until the next training batch, so every checkpoint written after a validation
holds what that validation scored. BatchNorm statistics are averaged with the weights (``use_buffers``): under
``strategy.bn=freeze_stats|freeze`` they are constants and stay exactly as they were. Every DDP rank averages the
same weights, so the averages stay identical across ranks.
"""

import logging
from typing import Any, Dict, Optional

import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn

log = logging.getLogger(__name__)


def ema_avg_fn(decay: float, warmup: bool):
    """EMA update for ``AveragedModel``: ``avg <- d * avg + (1 - d) * w`` with ``d = min(decay, (1 + n) / (10 + n))``
    after ``n`` updates when ``warmup`` (timm's ModelEmaV3), so short runs are not dominated by the initial weights."""

    @torch.no_grad()
    def update(averaged: torch.Tensor, current: torch.Tensor, num_averaged) -> torch.Tensor:
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n)) if warmup else decay
        return averaged * d + current * (1.0 - d)

    return update


class AveragedWeights(WeightAveraging):
    def __init__(self, kind: str = "ema", decay: float = 0.998, warmup: bool = True, start_step: int = 0,
                 start_epoch: Optional[int] = None):
        """kind: ema (every optimizer step from ``start_step``) | swa (each epoch end from ``start_epoch``; null:
        the last quarter of max_epochs)."""
        super().__init__(use_buffers=True, avg_fn=ema_avg_fn(decay, warmup) if kind == "ema" else None)
        self.kind, self.decay, self.warmup = kind, decay, warmup
        self.start_step, self.start_epoch = start_step, start_epoch
        self._swapped = False  # the model holds the averaged weights (after a validation, until training goes on)

    def setup(self, trainer, pl_module, stage: str) -> None:
        # the average needs the module's weights and buffers only: its plain attributes (the strategy with the run's
        # context and datamodule, the loss terms) are shared with the copy, not deep-copied (under DDP they hold
        # process-group handles that cannot be copied, and a copy of the datasets would be waste anyway)
        shared = {k: v for k, v in vars(pl_module).items() if not k.startswith("_")}
        for key in shared:
            delattr(pl_module, key)
        try:
            super().setup(trainer, pl_module, stage)
        finally:
            for key, value in shared.items():
                setattr(pl_module, key, value)
        if self._average_model is not None:
            for key, value in shared.items():
                setattr(self._average_model.module, key, value)
        if self.kind == "swa" and self.start_epoch is None:
            self.start_epoch = int(0.75 * max(1, trainer.max_epochs or 1))

    def should_update(self, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        if self.kind == "ema":
            return step_idx is not None and step_idx >= self.start_step
        return epoch_idx is not None and epoch_idx >= self.start_epoch

    def _has_average(self) -> bool:
        """At least one update: before it (SWA before start_epoch, EMA before start_step) the training weights are
        the ones validated, checkpointed and kept."""
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def _swap_in(self, pl_module) -> None:
        if self._has_average() and not self._swapped:
            self._swap_models(pl_module)
            self._swapped = True

    def _swap_out(self, pl_module) -> None:
        if self._average_model is not None and self._swapped:
            self._swap_models(pl_module)
            self._swapped = False

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            self._swap_in(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        pass  # stays swapped in for the checkpoints of this validation; _swap_out before the next training batch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._swap_out(pl_module)  # every epoch starts from the training weights, resumed or not

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._swap_out(pl_module)  # after a validation within the epoch (trainer.val_check_interval)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # an epoch-end update (swa) averages the training weights, also when validation already swapped them out
        swapped = self._swapped
        self._swap_out(pl_module)
        super().on_train_epoch_end(trainer, pl_module)
        if swapped:
            self._swap_in(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._swapped:  # the model already holds the averaged weights
            self._swapped = False
        elif self._has_average():
            self._copy_average_to_current(pl_module)
        else:
            log.warning("weight averaging: fit ended before the first update (%s); the training weights are kept",
                        f"start_epoch {self.start_epoch}" if self.kind == "swa" else f"start_step {self.start_step}")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: Dict[str, Any]) -> None:
        if self._average_model is not None and not self._has_average():
            # nothing averaged yet: the training weights are the model's; the (empty) average's state for resume
            checkpoint["current_model_state"] = checkpoint["state_dict"]
            checkpoint["averaging_state"] = {k: v for k, v in self._average_model.state_dict().items()
                                             if not k.startswith("module.")}
            return None
        if self._average_model is None or not self._swapped:
            return super().on_save_checkpoint(trainer, pl_module, checkpoint)
        # swapped: state_dict already holds the averaged weights; the training ones are in the averaged model's copy
        held = self._average_model.state_dict()
        checkpoint["current_model_state"] = {k[7:]: v for k, v in held.items() if k.startswith("module.")}
        checkpoint["averaging_state"] = {k: v for k, v in held.items() if not k.startswith("module.")}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: Dict[str, Any]) -> None:
        if trainer.state.fn != TrainerFn.FITTING or self._average_model is None:
            return  # testing a checkpoint loads its (averaged) weights, nothing more
        self._swapped = False
        if "current_model_state" not in checkpoint:
            log.warning("the checkpoint holds no averaged weights; the average starts from its weights")
            self._average_model.module.load_state_dict(pl_module.state_dict())
            return
        pl_module.load_state_dict(checkpoint["current_model_state"])
        # the training weights first: they fill what an adapter checkpoint's state_dict leaves out (the frozen base)
        self._average_model.module.load_state_dict(pl_module.state_dict())
        averaged = {f"module.{k}": v for k, v in checkpoint["state_dict"].items()}
        self._average_model.load_state_dict({**averaged, **checkpoint["averaging_state"]}, strict=False)

    def summary_sections(self) -> Dict[str, Any]:
        n = int(self._average_model.n_averaged) if self._average_model is not None else 0
        return {"weight_averaging": {"kind": self.kind, "decay": self.decay if self.kind == "ema" else None,
                                     "start_step" if self.kind == "ema" else "start_epoch":
                                         self.start_step if self.kind == "ema" else self.start_epoch,
                                     "updates": n}}
