"""Source-task test accuracy with the source head, before and after target training (forgetting)."""

import logging
from typing import Any, Dict, Optional

from omegaconf import OmegaConf

from tl_lightning.batch import accuracy, collect
from tl_lightning.data.multi_source import restrict_logits

log = logging.getLogger(__name__)


class SourceEvaluation:
    """For backbone=checkpoint runs whose checkpoint records its data config; a no-op otherwise."""

    def __init__(self, task, backbone, data_dir: str, batch_size: int):
        self.task, self.backbone = task, backbone
        self.loader = None
        self.class_masks = None
        self.acc_before: Optional[float] = None
        if task is not None and task.data_config is not None:
            from tl_lightning.data import build_datamodule

            dm = build_datamodule(OmegaConf.create(task.data_config), backbone.preprocessing, data_dir)
            dm.setup("test")
            self.loader = dm.plain_loader("test", batch_size)
            self.class_masks = getattr(dm, "class_masks", None)  # a multi-source task: one head per source

    def accuracy(self) -> float:
        device = next(self.backbone.parameters()).device
        head = self.task.head.to(device)
        return accuracy(collect(lambda b: restrict_logits(head(self.backbone(b["inputs"])), self.class_masks, b["group"]),
                                self.loader, [self.backbone, head], device))

    def before(self) -> None:
        if self.loader is not None:
            self.acc_before = self.accuracy()
            log.info("source task (%s): test accuracy before target training %.4f", self.task.path, self.acc_before)

    def after(self) -> Optional[Dict[str, Any]]:
        if self.task is None:
            return None
        out: Dict[str, Any] = {"checkpoint": self.task.path, "classes": self.task.class_names}
        if self.loader is None:
            out["note"] = "the source checkpoint records no data config; forgetting not measured"
            return out
        after = self.accuracy()
        out.update(acc_before=self.acc_before, acc_after=after, forgetting=self.acc_before - after)
        log.info("source task: accuracy %.4f -> %.4f (forgetting %.4f)", self.acc_before, after, out["forgetting"])
        return out
