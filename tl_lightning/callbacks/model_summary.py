"""One line about the model when training starts (``callbacks.model_summary``), instead of Lightning's table
(whose FLOPs column reads 0 for a model it cannot trace, and whose rows list the metrics as modules): the
parameters, trainable and frozen, and the modules the strategy keeps in eval mode, with the reason."""

import logging

import lightning as L
from torch import nn

log = logging.getLogger("tl_lightning")


def millions(count: int) -> str:
    return f"{count / 1e6:.2f} M" if count >= 1_000_000 else f"{count:,}"


class ParameterSummary(L.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        counts = pl_module.parameter_counts()  # what summary.json records
        line = (f"model: {millions(counts['trainable'] + counts['frozen'])} parameters, "
                f"{millions(counts['trainable'])} trainable, {millions(counts['frozen'])} frozen")
        in_eval = [m for m in pl_module.modules() if not m.training]
        if in_eval:
            strategy = getattr(getattr(pl_module, "strategy", None), "cfg", None)
            bn = strategy.get("bn") if strategy is not None else None
            norms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in in_eval)
            name = f"strategy={strategy.name}" if strategy is not None and "name" in strategy else "the strategy"
            if bn in ("freeze_stats", "freeze"):
                why = f"{name} strategy.bn={bn}: {norms} BatchNorm layers keep their running statistics"
            else:
                why = f"{name}: the frozen layers run as they were trained"
            line += f"; {len(in_eval)} modules in eval mode on purpose ({why})"
        log.info(line)
