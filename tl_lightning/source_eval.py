"""Source-task test accuracy with the source head, before and after target training (forgetting).

A Lightning callback of every ``backbone=checkpoint`` run: "before" when fit sets up (before a resumed
checkpoint is restored), "after" when the run collects its summary (after testing: the tested weights).
"""

import logging
from typing import Any, Dict, Optional

import lightning as L
from omegaconf import OmegaConf

from tl_lightning.batch import accuracy, collect
from tl_lightning.data.registry import build_datamodule

log = logging.getLogger(__name__)


class SourceEvaluation(L.Callback):
    """For backbone=checkpoint runs whose checkpoint records its data config; says why not otherwise."""

    def __init__(self, context, backbone):
        self.task, self.backbone = context.source, backbone
        self.loader, self.data_task = None, None
        self.acc_before: Optional[float] = None
        self.trainer = None
        if self.task is not None and self.task.data_config is not None:
            dm = build_datamodule(OmegaConf.create(self.task.data_config), backbone.preprocessing, context.paths)
            dm.setup("test")
            self.loader = dm.plain_loader("test", context.eval_batch_size)
            self.data_task = dm.task  # a multi-source task: one head per source (its class masks)

    def accuracy(self) -> float:
        device = next(self.backbone.parameters()).device
        head = self.task.head.to(device)
        return accuracy(collect(lambda b: self.data_task.restrict(head(self.backbone(b["inputs"])), b["group"]),
                                self.loader, [self.backbone, head], device))

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.trainer = trainer
        if stage == "fit" and self.loader is not None and self.acc_before is None:
            self.acc_before = self.accuracy()
            log.info("source task (%s): test accuracy before target training %.4f", self.task.path, self.acc_before)

    def summary_sections(self) -> Dict[str, Any]:
        if self.task is None:
            return {}
        out: Dict[str, Any] = {"checkpoint": self.task.path, "classes": self.task.class_names}
        if self.loader is None:
            out["note"] = "the source checkpoint records no data config; forgetting not measured"
            return {"source": out}
        after = self.accuracy()
        out.update(acc_before=self.acc_before, acc_after=after, forgetting=self.acc_before - after)
        log.info("source task: accuracy %.4f -> %.4f (forgetting %.4f)", self.acc_before, after, out["forgetting"])
        trainer = self.trainer
        if trainer is not None and trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({f"source/{k}": v for k, v in out.items() if isinstance(v, float)},
                                   step=trainer.global_step)
                logger.save()
        return {"source": out}
