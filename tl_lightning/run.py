"""The task: build backbone, data, module, callbacks, loggers and trainer; fit; test the best checkpoint."""

import glob
import json
import logging
import os
import time
from typing import Any, Dict, Optional, Tuple

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from tl_lightning.backbones import build_backbone
from tl_lightning.callbacks.factory import build_callbacks
from tl_lightning.config.schema import MODEL_SWITCHES
from tl_lightning.data import build_datamodule
from tl_lightning.data.base import batch_size_for
from tl_lightning.errors import ConfigError
from tl_lightning.features import FeatureDataModule, load_or_build
from tl_lightning.loggers import build_loggers, finish_wandb
from tl_lightning.module import TransferModule
from tl_lightning.strategies import build_strategy

log = logging.getLogger(__name__)


def _trainer_kwargs(cfg: DictConfig) -> Dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    kwargs = {k: v for k, v in kwargs.items() if v is not None and k not in MODEL_SWITCHES}
    if kwargs.get("precision") == "bf16-mixed" and kwargs.get("accelerator") in ("gpu", "cuda") \
            and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        log.warning("this GPU has no bf16; using precision=16-mixed instead")
        kwargs["precision"] = "16-mixed"
    return kwargs


def _cluster_plugins() -> list:
    """Under hydra/launcher=slurm submitit owns requeue (USR2 -> checkpoint -> requeue); Lightning's own SLURM
    auto-requeue (USR1) is switched off so the two never fight. A plain sbatch job keeps Lightning's."""
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and "SLURM_JOB_ID" in os.environ:
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        return [SLURMEnvironment(auto_requeue=False)]
    return []


def apply_model_switches(module: TransferModule, trainer_cfg) -> None:
    """channels_last and torch.compile, from the trainer group."""
    if trainer_cfg.channels_last:
        module.channels_last = True
        module.to(memory_format=torch.channels_last)
    if trainer_cfg.compile:
        module.backbone.model.compile()


def _scalar_metrics(metrics: Dict[str, Any]) -> Dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            out[k] = float(v)
        elif isinstance(v, (int, float)):
            out[k] = float(v)
    return out


def train(cfg: DictConfig, output_dir: str, group: Optional[str] = None,
          backbone_choice: str = "") -> Tuple[Dict[str, float], Dict[str, Any]]:
    """Run one experiment; return (metrics, summary). ``cfg`` is already validated."""
    start = time.time()
    L.seed_everything(cfg.seed, workers=True)
    strategy = build_strategy(cfg.strategy)
    if not strategy.uses_pretrained and cfg.backbone.weights is not None:
        raise ConfigError(f"strategy={strategy.name} starts from random weights; drop backbone.weights={cfg.backbone.weights}")
    pretrained = bool(cfg.backbone.pretrained and strategy.uses_pretrained)
    backbone = build_backbone(cfg.backbone, pretrained=pretrained, choice=backbone_choice, image_size=cfg.data.image_size)
    datamodule = build_datamodule(cfg.data, backbone.input_spec, cfg.paths.data_dir)
    datamodule.setup("fit")
    strategy.source, strategy.datamodule, strategy.data_dir = backbone.source_task, datamodule, cfg.paths.data_dir
    ckpt_path = resolve_resume(cfg.resume, output_dir)

    run_config = OmegaConf.to_container(cfg, resolve=True)
    module = TransferModule(backbone, datamodule.num_classes, strategy, cfg.optimizer, cfg.scheduler,
                            class_names=datamodule.class_names, head_dropout=cfg.backbone.head_dropout,
                            run_config=run_config)
    source = SourceEvaluation(backbone.source_task, backbone, cfg)
    source.before()
    feature_cache = None
    if strategy.caches_features and cfg.strategy.cache_features:
        if cfg.data.augment != "none":
            log.info("features are not cached: data.augment=%s changes the training images every epoch", cfg.data.augment)
        else:
            tensors, feature_cache = load_or_build(backbone, datamodule, cfg.paths.cache_dir,
                                                   batch_size_for(cfg.data, "test"))
            datamodule = FeatureDataModule(tensors, datamodule)
            module.features_input = True
    apply_model_switches(module, cfg.trainer)
    counts = module.parameter_counts()
    run_name = f"{cfg.strategy.name}-{backbone.name}-{cfg.data.name}-spc{cfg.data.samples_per_class}-s{cfg.seed}"
    loggers = build_loggers(cfg.logger, output_dir, run_config, group, run_name, resuming=ckpt_path is not None)
    try:
        for logger in loggers:
            logger.log_hyperparams({**run_config, "params": counts})
        started = StartRecorder()
        callbacks = build_callbacks(cfg.callbacks, output_dir, has_logger=bool(loggers)) + strategy.callbacks() + [started]
        trainer = L.Trainer(**_trainer_kwargs(cfg), callbacks=callbacks, logger=loggers or False,
                            default_root_dir=output_dir, plugins=_cluster_plugins())
        RUNNING.update(trainer=trainer, last=os.path.join(output_dir, "checkpoints", "last.ckpt"))
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        fit_metrics = _scalar_metrics(trainer.callback_metrics)
        strategy_info = strategy_summary(strategy)  # at the end of fit (testing loads the best checkpoint's state)
        test_metrics: Dict[str, float] = {}
        best_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if cfg.test:
            ckpt = best_path or None
            if ckpt is None:
                log.warning("no best checkpoint (checkpointing is off or fit ran no validation); testing the final weights")
            trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
            test_metrics = _scalar_metrics(trainer.callback_metrics)
        metrics = {**fit_metrics, **test_metrics}
        source_result = source.after()
        if source_result and trainer.is_global_zero:
            for logger in loggers:
                logger.log_metrics({f"source/{k}": v for k, v in source_result.items() if isinstance(v, float)},
                                   step=trainer.global_step)
                logger.save()
        summary = {
            "backbone": backbone.name,
            "backbone_kind": cfg.backbone.kind,
            "pretrained": pretrained,
            "weights": cfg.backbone.weights,
            "strategy": strategy.name,
            "dataset": cfg.data.name,
            "samples_per_class": cfg.data.samples_per_class,
            "seed": cfg.seed,
            "num_classes": datamodule.num_classes,
            "class_names": datamodule.class_names,
            "split": datamodule.split_info,
            "input_spec": {**backbone.input_spec.__dict__},
            "params": counts,
            "epochs_run": trainer.current_epoch,
            "global_step": trainer.global_step,
            "best_checkpoint": best_path,
            "best_score": float(trainer.checkpoint_callback.best_model_score)
            if trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_score is not None else None,
            "optimized_metric": cfg.optimized_metric,
            "val": {k: v for k, v in metrics.items() if k.startswith("val/") and "/acc_class/" not in k},
            "test": {k: v for k, v in metrics.items() if k.startswith("test/") and "/acc_class/" not in k},
            "test_per_class": {k.split("/")[-1]: v for k, v in metrics.items() if k.startswith("test/acc_class/")},
            "wall_time_s": round(time.time() - start, 2),
            "resumed_from": ckpt_path,
            "started_at": started.at,  # epoch and global step fit started from (> 0 after a resume)
            "feature_cache": feature_cache,
            "source": source_result,
            "strategy_info": strategy_info,
        }
        if trainer.is_global_zero:
            write_summary(output_dir, summary)
            OmegaConf.save(cfg, os.path.join(output_dir, "config_resolved.yaml"))
        return metrics, summary
    finally:
        RUNNING.clear()
        finish_wandb()


class StartRecorder(L.Callback):
    def __init__(self):
        self.at: Dict[str, int] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.at = {"epoch": trainer.current_epoch, "global_step": trainer.global_step}
        if trainer.global_step:
            log.info("resumed at epoch %d, global step %d", trainer.current_epoch, trainer.global_step)


RUNNING: Dict[str, Any] = {}  # the trainer of the run in progress: the Slurm requeue hook checkpoints it


def save_on_signal() -> Optional[str]:
    """Write last.ckpt of the run in progress (called on rank 0 when Slurm announces preemption or the time
    limit). With several ranks a save would wait for the others at a barrier, so the run resumes from the
    last epoch's last.ckpt instead."""
    trainer = RUNNING.get("trainer")
    if trainer is None or trainer.state.stage is None or not trainer.training:
        return None
    if trainer.world_size > 1:
        log.warning("requeue with %d ranks: resuming from the last epoch's last.ckpt", trainer.world_size)
        return None
    trainer.save_checkpoint(RUNNING["last"])
    log.info("saved %s before requeue", RUNNING["last"])
    return RUNNING["last"]


def resolve_resume(resume: Optional[str], output_dir: str) -> Optional[str]:
    """resume=null: start fresh; auto: <run dir>/checkpoints/last.ckpt if it exists; or a checkpoint path."""
    if resume is None:
        return None
    if resume == "auto":
        # last.ckpt (every epoch, or when submitit requeues) or Lightning's hpc_ckpt_N.ckpt (its own SLURM
        # requeue in a plain sbatch job), whichever is newer
        candidates = [p for p in [os.path.join(output_dir, "checkpoints", "last.ckpt"),
                                  *glob.glob(os.path.join(output_dir, "hpc_ckpt_*.ckpt"))] if os.path.isfile(p)]
        if candidates:
            newest = max(candidates, key=os.path.getmtime)
            log.info("resume=auto: resuming from %s", newest)
            return newest
        log.info("resume=auto: no checkpoint in %s yet; starting fresh", output_dir)
        return None
    if not os.path.isfile(resume):
        raise ConfigError(f"resume: no such checkpoint file: {resume} (use resume=auto or a .ckpt path)")
    return resume


def strategy_summary(strategy) -> Dict[str, Any]:
    info: Dict[str, Any] = {}
    if getattr(strategy, "staged", False):
        info.update(phase=strategy.phase, trainable_units=strategy.trainable_units())
    if getattr(strategy, "fisher_from", ""):
        info["fisher_from"] = strategy.fisher_from
    return info


class SourceEvaluation:
    """Source-task test accuracy with the source head, before and after target training (forgetting)."""

    def __init__(self, task, backbone, cfg):
        self.task, self.backbone, self.cfg = task, backbone, cfg
        self.loader = None
        self.acc_before: Optional[float] = None
        if task is not None and task.data_config is not None:
            from tl_lightning.data import build_datamodule as build

            dm = build(OmegaConf.create(task.data_config), backbone.input_spec, cfg.paths.data_dir)
            dm.setup("test")
            self.loader = dm.plain_loader("test", batch_size_for(cfg.data, "test"))

    @torch.no_grad()
    def accuracy(self) -> float:
        was_training = self.backbone.training
        self.backbone.eval()
        device = next(self.backbone.parameters()).device
        head = self.task.head.to(device).eval()
        correct = total = 0
        for x, y in self.loader:
            pred = head(self.backbone(x.to(device)).float()).argmax(-1).cpu()
            correct += int((pred == y).sum())
            total += len(y)
        self.backbone.train(was_training)
        return correct / max(1, total)

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


def write_summary(output_dir: str, summary: Dict[str, Any]) -> str:
    path = os.path.join(output_dir, "summary.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(summary, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path
