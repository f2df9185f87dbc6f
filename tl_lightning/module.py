"""TransferModule: one LightningModule for every strategy (backbone + new head + loss + metrics).

The loss is the ``loss`` group's criterion plus the terms from ``loss.terms`` and from the strategy
(tl_lightning/losses); batches are dicts (tl_lightning/batch.py); what the data's task is (classes, counts,
groups, class masks) comes from the task description (tl_lightning/task.py). Checkpoints record what
``tl_lightning.inference`` needs to rebuild the model without this class.
"""

from contextlib import contextmanager
from typing import Any, Dict, Set

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from tl_lightning.backbones.base import Backbone
from tl_lightning.batch import in_memory_format
from tl_lightning.inference import build_head
from tl_lightning.losses import build_criterion, build_terms, total_loss
from tl_lightning.metrics import StageMetrics, log_stage_end
from tl_lightning.optim import build_optimizer, build_scheduler
from tl_lightning.strategies.base import Strategy
from tl_lightning.strategies.capabilities import OwnTrainingLoss, PartialCheckpoints, SolvedHead, checkpoint_state
from tl_lightning.task import TaskDescription


class TransferModule(L.LightningModule):
    def __init__(self, backbone: Backbone, task: TaskDescription, strategy: Strategy, cfg, run_config=None):
        """``cfg``: the run's config (its optimizer, scheduler, loss and backbone.head_dropout nodes are read)."""
        super().__init__()
        self.backbone = backbone
        self.task = task
        self.head_dropout = cfg.backbone.head_dropout
        self.head = build_head(backbone.feature_dim, task.num_classes, self.head_dropout)
        # counts: training samples per class (and per group): what the long-tail and group-robust criteria weigh by
        self.criterion = build_criterion(cfg.loss, task.class_counts.get("train"), task.group_counts.get("train"))
        self.criterion_name = cfg.loss.name
        self.strategy = strategy
        self.optimizer_cfg = cfg.optimizer
        self.scheduler_cfg = cfg.scheduler
        self.class_names = list(task.class_names)
        self.run_config = run_config or {}
        # no per-batch validation (a GPU sync each step) and update() rather than forward() (no per-batch value
        # to compute): train/acc is logged per epoch only
        self.train_acc = MulticlassAccuracy(task.num_classes, average="micro", validate_args=False)
        self.val_metrics = StageMetrics("val", task.num_classes, task.group_names, task.group_attribute)
        self.test_metrics = StageMetrics("test", task.num_classes, task.group_names, task.group_attribute)
        self.channels_last = False  # trainer.channels_last (tl_lightning.trainer.apply_model_switches)
        self._features_input = False  # True: batches are cached backbone features (read_features)
        for name, parameter in strategy.module_parameters().items():
            self.register_parameter(name, parameter)
        strategy.setup(self)
        self.strict_loading = not isinstance(strategy, PartialCheckpoints)  # partial checkpoints lack the base
        self.loss_terms = build_terms(cfg.loss.terms) + strategy.loss_terms()
        for term in self.loss_terms:
            term.attach(backbone.feature_dim, task.num_classes)
        # terms with parameters of their own (a domain classifier): trained, checkpointed and restored with the module
        self.term_modules = nn.ModuleList([t for t in self.loss_terms if isinstance(t, nn.Module)])
        self.train()  # frozen parts to eval mode now: Lightning does not call train() when fit starts

    def forward(self, inputs) -> torch.Tensor:
        if self._features_input:
            return self.head(inputs)
        return self.head(self.features(inputs))

    def features(self, inputs) -> torch.Tensor:
        return self.backbone(in_memory_format(inputs, self.channels_last))

    def use_channels_last(self) -> None:
        """NHWC memory format for the model and its image inputs (trainer.channels_last)."""
        self.channels_last = True
        self.to(memory_format=torch.channels_last)

    def read_features(self, enabled: bool) -> None:
        """Batches hold cached backbone features (tl_lightning/features.py) instead of raw inputs."""
        self._features_input = enabled

    @contextmanager
    def raw_inputs(self):
        """Inputs through the backbone inside the block, whatever the batches of fit hold (e.g. saliency maps of a
        probe trained on cached features)."""
        before, self._features_input = self._features_input, False
        try:
            yield self
        finally:
            self._features_input = before

    def logged_metric_names(self) -> Set[str]:
        """Every metric name this module logs: what optimized_metric and the monitors may name."""
        names = {"train/loss", "train/acc", f"train/{self.criterion_name}", *(f"train/{t.name}" for t in self.loss_terms),
                 *self.task.target_metrics}
        for metrics in (self.val_metrics, self.test_metrics):
            names |= metrics.names(self.class_names)
        return names

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            self.strategy.on_train_mode(self)
        return self

    def on_train_epoch_start(self) -> None:
        # Lightning restores each submodule's own mode after validation and never calls train() itself,
        # so the strategy re-asserts its frozen parts here (and after a resume changed the trainable set)
        if self.training:
            self.strategy.on_train_mode(self)

    def on_fit_end(self) -> None:
        self.strategy.on_fit_end(self)

    def parameter_counts(self) -> Dict[str, Any]:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return {"trainable": trainable, "frozen": total - trainable, "trainable_share": trainable / max(1, total)}

    def restrict(self, logits: torch.Tensor, batch) -> torch.Tensor:
        return self.task.restrict(logits, batch["group"])

    def training_step(self, batch, batch_idx):
        if isinstance(self.strategy, OwnTrainingLoss):  # e.g. episodes (protonet)
            own = self.strategy.training_loss(self, batch)
            self.log("train/loss", own["loss"], on_step=True, on_epoch=True, prog_bar=True)
            self.log("train/acc", own["acc"], on_step=False, on_epoch=True)
            return own["loss"]
        # the features once, for the head and for the terms that read them (batch["features"]; tl_lightning/batch.py)
        features = batch["inputs"] if self._features_input else self.features(batch["inputs"])
        batch = {**batch, "features": features}
        logits = self.restrict(self.head(features), batch)
        loss, parts = total_loss(self.criterion, self.loss_terms, self, batch, logits)
        n = len(batch["target"])  # the labelled batch (Lightning cannot tell it apart from an unlabelled part)
        for name, value in parts.items():
            self.log(f"train/{self.criterion_name if name == 'criterion' else name}", value, on_step=False,
                     on_epoch=True, batch_size=n)
        self.train_acc.update(logits.detach().argmax(-1), batch["target"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=n)
        if isinstance(self.strategy, SolvedHead) and self.strategy.head_solved:
            return None  # scored only: Lightning skips backward and the optimizer step
        return loss

    def _eval_step(self, batch, metrics: StageMetrics) -> torch.Tensor:
        logits = self.restrict(self(batch["inputs"]), batch)
        self.log(f"{metrics.stage}/loss", self.criterion(logits, batch["target"]), on_epoch=True, sync_dist=True,
                 prog_bar=True)
        metrics.update(logits, batch["target"], batch.get("group"))
        return logits.detach()  # callbacks may look at the predictions (misclassified examples)

    def _eval_epoch_end(self, metrics: StageMetrics) -> None:
        log_stage_end(self, metrics, self.class_names)

    def validation_step(self, batch, batch_idx):
        return self._eval_step(batch, self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end(self.val_metrics)

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end(self.test_metrics)

    def configure_optimizers(self):
        groups = self.strategy.param_groups(self)
        if len(self.term_modules):  # the loss terms' own parameters, at the strategy's (head) learning rate
            groups.append({"name": "loss_terms", "params": list(self.term_modules.parameters()),
                           "lr": self.strategy.cfg.lr})
        optimizer = build_optimizer(groups, self.optimizer_cfg)
        max_epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        total_steps = int(self.trainer.estimated_stepping_batches)
        own = self.strategy.configure_schedule(self.scheduler_cfg, total_steps, max_epochs)
        scheduler = build_scheduler(optimizer, self.scheduler_cfg, total_steps, max_epochs,
                                    group_factor=self.strategy.lr_factor if self.strategy.staged else None,
                                    own_schedule=own)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        partial = isinstance(self.strategy, PartialCheckpoints)
        checkpoint["tl_lightning"] = {
            "config": self.run_config, "class_names": self.class_names, "architecture": self.backbone.arch,
            "input_spec": dict(self.backbone.input_spec.__dict__), "head_dropout": self.head_dropout,
            "strategy": self.strategy.name, "strategy_state": self.strategy.state_dict(),
            "adapter": self.strategy.adapter_record() if partial else None,
        }
        checkpoint["state_dict"] = checkpoint_state(self.strategy, self, checkpoint["state_dict"])

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        extra = checkpoint.get("tl_lightning", {})
        if isinstance(self.strategy, PartialCheckpoints):
            self.strategy.check_checkpoint(self, checkpoint["state_dict"])
        if "strategy_state" in extra:
            self.strategy.load_state_dict(extra["strategy_state"])
            self.strategy.restore(self)
