"""One learning rate per schedule instead of one per optimizer parameter group.

A run has tens of parameter groups (each layer group of the backbone, with and without weight decay), but
their rates follow two schedules: the head's and the backbone's (the backbone's groups differ from its top
group by a constant layer-decay factor, and the no-decay twin of a group has its rate). So this logs
``lr/head`` and ``lr/backbone`` (the top backbone group, the one next to the head), where Lightning's
``LearningRateMonitor`` would log one ``lr-AdamW/<group>`` per group.
"""

from typing import Dict

import lightning as L


def schedule_rates(optimizer) -> Dict[str, float]:
    rates: Dict[str, float] = {}
    for group in optimizer.param_groups:  # input to output: the last backbone group is the top one
        name = group.get("name", "")
        if name.endswith("_no_decay"):
            continue
        if name == "head":
            rates["lr/head"] = group["lr"]
        elif name.startswith("backbone."):
            rates["lr/backbone"] = group["lr"]
    return rates


class LearningRates(L.Callback):
    def __init__(self, logging_interval: str = "step"):
        self.logging_interval = logging_interval

    def _log(self, trainer) -> None:
        if not trainer.optimizers or not trainer.loggers:
            return
        rates = schedule_rates(trainer.optimizers[0])
        for logger in trainer.loggers:
            logger.log_metrics(rates, step=trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.logging_interval == "step" and trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self._log(trainer)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.logging_interval == "epoch":
            self._log(trainer)
