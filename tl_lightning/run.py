"""The task: build backbone, data, module, callbacks, loggers and trainer; fit; test the best checkpoint.

Pieces live next door: trainer.py (Trainer arguments), resume.py (resume/requeue), source_eval.py
(forgetting of a checkpoint's source task), summary.py (summary.json), features.py (cached probe).
"""

import logging
import os
import time
from typing import Any, Dict, Optional, Tuple

import lightning as L
from omegaconf import DictConfig, OmegaConf

from tl_lightning.atomic import AtomicCheckpointIO, atomic_write
from tl_lightning.backbones.registry import build_backbone
from tl_lightning.callbacks.best_epoch import BestEpoch
from tl_lightning.callbacks.factory import build_callbacks
from tl_lightning.callbacks.misclassified import MisclassifiedExamples
from tl_lightning.config.validate import check_metric_names
from tl_lightning.data import build_datamodule
from tl_lightning.data.base import batch_size_for
from tl_lightning.data.groups import require_val_groups
from tl_lightning.errors import ConfigError, Interrupted
from tl_lightning.features import FeatureDataModule, load_or_build
from tl_lightning.loggers import build_loggers, finish_wandb, log_lines_once
from tl_lightning.losses.fairness import attribute_of_groups
from tl_lightning.module import TransferModule
from tl_lightning.resume import RUN_IN_PROGRESS, GracefulStop, StartRecorder, resolve_resume
from tl_lightning.source_eval import SourceEvaluation
from tl_lightning.strategies import build_strategy
from tl_lightning.summary import (
    build_summary,
    checkpoint_size,
    diagnostics_summary,
    scalar_metrics,
    strategy_summary,
    write_summary,
)
from tl_lightning.trainer import apply_model_switches, cluster_plugins, trainer_kwargs

log = logging.getLogger(__name__)


def train(cfg: DictConfig, output_dir: str, group: Optional[str] = None,
          backbone_choice: str = "") -> Tuple[Dict[str, float], Dict[str, Any]]:
    """Run one experiment; return (metrics, summary). ``cfg`` is already validated."""
    start = time.time()
    log_lines_once()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    strategy = build_strategy(cfg.strategy)
    if not strategy.uses_pretrained and cfg.backbone.weights is not None:
        raise ConfigError(f"strategy={strategy.name} starts from random weights; drop backbone.weights={cfg.backbone.weights}")
    pretrained = bool(cfg.backbone.pretrained and strategy.uses_pretrained)
    backbone = build_backbone(cfg.backbone, pretrained=pretrained, choice=backbone_choice,
                              image_size=cfg.data.get("image_size"))
    datamodule = build_datamodule(cfg.data, backbone.preprocessing, cfg.paths.data_dir)
    text_data = datamodule.modality == "text"
    if text_data:
        datamodule.cache_dir = cfg.paths.cache_dir  # tokenised splits are cached there
    datamodule.setup("fit")
    require_val_groups(cfg, datamodule.split_info)
    strategy.source, strategy.datamodule, strategy.data_dir = backbone.source_task, datamodule, cfg.paths.data_dir
    ckpt_path = resolve_resume(cfg.resume, output_dir)

    run_config = OmegaConf.to_container(cfg, resolve=True)
    module = TransferModule(backbone, datamodule.num_classes, strategy, cfg.optimizer, cfg.scheduler, cfg.loss,
                            class_names=datamodule.class_names, head_dropout=cfg.backbone.head_dropout,
                            run_config=run_config, class_counts=datamodule.split_info["class_counts"]["train"],
                            group_names=datamodule.group_names,
                            group_attribute=attribute_of_groups(datamodule.group_names, "shortcut" in datamodule.split_info)
                            if datamodule.group_names and getattr(datamodule, "class_masks", None) is None else None,
                            class_masks=getattr(datamodule, "class_masks", None),
                            group_counts=(datamodule.split_info.get("groups") or {}).get("counts", {}).get("train"))
    check_metric_names(cfg, module.logged_metric_names())
    eval_batch = batch_size_for(cfg.data, "test")
    source = SourceEvaluation(backbone.source_task, backbone, cfg.paths.data_dir, eval_batch)
    source.before()
    feature_cache = None
    if strategy.caches_features and cfg.strategy.cache_features:
        if not datamodule.train_is_deterministic:
            log.info("features are not cached: data.augment=%s changes the training samples every epoch",
                     datamodule.augment)
        else:
            tensors, feature_cache = load_or_build(backbone, datamodule, cfg.paths.cache_dir, eval_batch)
            datamodule = FeatureDataModule(tensors, datamodule)
            module.features_input = True
    datamodule = strategy.wrap_datamodule(datamodule)
    apply_model_switches(module, cfg.trainer)
    counts = module.parameter_counts()
    run_name = f"{cfg.strategy.name}-{backbone.name}-{cfg.data.name}-spc{cfg.data.samples_per_class}-s{cfg.seed}"
    loggers = build_loggers(cfg.logger, output_dir, run_config, group, run_name, resuming=ckpt_path is not None)
    try:
        for logger in loggers:
            logger.log_hyperparams({**run_config, "params": counts})
        started, best_epoch = StartRecorder(), BestEpoch()
        last_path = os.path.join(output_dir, "checkpoints", "last.ckpt")
        stop = GracefulStop(last_path)
        callbacks = build_callbacks(cfg.callbacks, output_dir, has_logger=bool(loggers)) + strategy.callbacks() + \
            [started, best_epoch, stop]
        if text_data:
            callbacks.append(MisclassifiedExamples(output_dir))
        trainer = L.Trainer(**trainer_kwargs(cfg), callbacks=callbacks, logger=loggers or False,
                            default_root_dir=output_dir, plugins=[*cluster_plugins(), AtomicCheckpointIO()])
        fit_start = time.time()
        try:
            with RUN_IN_PROGRESS.tracking(trainer, last_path):
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except SystemExit:  # Lightning ends a fit stopped by Ctrl-C / SIGTERM with SystemExit
            if stop.signal_name:
                raise Interrupted(f"{stop.signal_name} at epoch {trainer.current_epoch}, global step "
                                  f"{trainer.global_step}", stop.signal_name, stop.saved) from None
            raise
        fit_s = time.time() - fit_start
        fit_metrics = scalar_metrics(trainer.callback_metrics)
        strategy_info = strategy_summary(strategy)  # at the end of fit (testing loads the best checkpoint's state)
        best_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        test_metrics: Dict[str, float] = {}
        if cfg.test:
            if not best_path:
                log.warning("no best checkpoint (checkpointing is off or fit ran no validation); testing the final weights")
            trainer.test(module, datamodule=datamodule, ckpt_path=best_path or None, verbose=False, weights_only=True)
            test_metrics = scalar_metrics(trainer.callback_metrics)
        metrics = {**fit_metrics, **test_metrics}
        fewshot = strategy.fewshot_evaluation(module, getattr(datamodule, "target", datamodule)) if cfg.test else None
        source_result = source.after()
        if source_result and trainer.is_global_zero:
            for logger in loggers:
                logger.log_metrics({f"source/{k}": v for k, v in source_result.items() if isinstance(v, float)},
                                   step=trainer.global_step)
                logger.save()
        summary = build_summary(cfg, backbone=backbone, pretrained=pretrained, strategy=strategy, datamodule=datamodule,
                                counts=counts, trainer=trainer, best_path=best_path, metrics=metrics, start=start,
                                resumed_from=ckpt_path, started_at=started.at, feature_cache=feature_cache,
                                source=source_result, strategy_info=strategy_info, best_epoch=best_epoch.epoch)
        monitors = [c for c in callbacks if type(c).__name__ == "FairnessMonitor"]
        if monitors:
            summary["fairness_events"] = monitors[0].events
        summary["diagnostics"] = diagnostics_summary(callbacks, metrics)
        if fewshot:
            summary["fewshot"] = fewshot
        epochs_here = max(1, trainer.current_epoch - (started.at or {}).get("epoch", 0))
        summary["fit_time_s"], summary["epoch_time_s"] = round(fit_s, 2), round(fit_s / epochs_here, 3)
        summary["checkpoint"] = checkpoint_size(module, best_path)
        if strategy.adapter_checkpoints and trainer.is_global_zero:
            size = summary["checkpoint"]
            log.info("checkpoint holds %.2f MB of weights (adapters and head): %.1f %% of the full model's %.2f MB",
                     size["weights_bytes"] / 1e6, 100 * size["weights_share"], size["full_weights_bytes"] / 1e6)
        if trainer.is_global_zero:
            write_summary(output_dir, summary)
            atomic_write(os.path.join(output_dir, "config_resolved.yaml"), OmegaConf.to_yaml(cfg))
        return metrics, summary
    finally:
        finish_wandb()
