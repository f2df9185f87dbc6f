"""The task: assemble (backbone, data, strategy, module, callbacks, loggers, trainer), fit, test the best
checkpoint, collect the summary. A straight line that names no strategy, modality or data option: what a part
needs from the run reaches it through the run context (tl_lightning/context.py), what it reports reaches
summary.json through its summary sections (tl_lightning/summary.py).

Pieces live next door: trainer.py (Trainer arguments), resume.py (resume/requeue), source_eval.py
(forgetting of a checkpoint's source task), summary.py (summary.json).
"""

import logging
import time
from typing import Any, Dict, Optional, Tuple

import lightning as L
from omegaconf import DictConfig, OmegaConf

from tl_lightning.atomic import atomic_write
from tl_lightning.backbones.registry import build_backbone
from tl_lightning.callbacks.best_epoch import BestEpoch
from tl_lightning.callbacks.factory import build_callbacks
from tl_lightning.config.validate import check_metric_names
from tl_lightning.context import DataPaths, RunContext, RunLayout
from tl_lightning.data import build_datamodule
from tl_lightning.data.base import batch_size_for
from tl_lightning.data.groups import require_val_groups
from tl_lightning.errors import Interrupted
from tl_lightning.loggers import build_loggers, finish_wandb, log_lines_once
from tl_lightning.module import TransferModule
from tl_lightning.resume import RUN_IN_PROGRESS, GracefulStop, StartRecorder, resolve_resume
from tl_lightning.source_eval import SourceEvaluation
from tl_lightning.strategies import build_strategy, strategy_class
from tl_lightning.strategies.capabilities import WrapsData
from tl_lightning.summary import build_summary, collect_sections, scalar_metrics, write_summary
from tl_lightning.trainer import AtomicCheckpointIO, apply_model_switches, cluster_plugins, trainer_kwargs

log = logging.getLogger(__name__)


def train(cfg: DictConfig, output_dir: str, group: Optional[str] = None,
          backbone_choice: str = "") -> Tuple[Dict[str, float], Dict[str, Any]]:
    """Run one experiment; return (metrics, summary). ``cfg`` is already validated."""
    start = time.time()
    log_lines_once()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    layout, paths = RunLayout(output_dir), DataPaths.of(cfg.paths)
    pretrained = bool(cfg.backbone.pretrained and strategy_class(cfg.strategy.name).uses_pretrained)
    backbone = build_backbone(cfg.backbone, pretrained=pretrained, choice=backbone_choice,
                              image_size=cfg.data.get("image_size"))
    datamodule = build_datamodule(cfg.data, backbone.preprocessing, paths)
    datamodule.setup("fit")
    require_val_groups(cfg, datamodule.split_info)
    context = RunContext(paths, layout, datamodule, backbone.source_task, batch_size_for(cfg.data, "test"))
    strategy = build_strategy(cfg.strategy, context)
    ckpt_path = resolve_resume(cfg.resume, output_dir)
    run_config = OmegaConf.to_container(cfg, resolve=True)
    module = TransferModule(backbone, datamodule.task, strategy, cfg, run_config)
    check_metric_names(cfg, module.logged_metric_names())
    source = SourceEvaluation(context, backbone)
    fit_data = strategy.wrap_datamodule(datamodule, module) if isinstance(strategy, WrapsData) else datamodule
    apply_model_switches(module, cfg.trainer)
    counts = module.parameter_counts()
    run_name = f"{cfg.strategy.name}-{backbone.name}-{cfg.data.name}-spc{cfg.data.samples_per_class}-s{cfg.seed}"
    loggers = build_loggers(cfg.logger, output_dir, run_config, group, run_name, resuming=ckpt_path is not None)
    try:
        for logger in loggers:
            logger.log_hyperparams({**run_config, "params": counts})
        started, best_epoch, stop = StartRecorder(), BestEpoch(), GracefulStop(layout.last_checkpoint)
        callbacks = [*build_callbacks(cfg.callbacks), *strategy.callbacks(),
                     *datamodule.callbacks(layout), source, started, best_epoch, stop]
        trainer = L.Trainer(**trainer_kwargs(cfg), callbacks=callbacks, logger=loggers or False,
                            default_root_dir=output_dir, plugins=[*cluster_plugins(), AtomicCheckpointIO()])
        fit_start = time.time()
        try:
            with RUN_IN_PROGRESS.tracking(trainer, layout.last_checkpoint):
                trainer.fit(module, datamodule=fit_data, ckpt_path=ckpt_path, weights_only=True)
        except SystemExit:  # Lightning ends a fit stopped by Ctrl-C / SIGTERM with SystemExit
            if stop.signal_name:
                raise Interrupted(f"{stop.signal_name} at epoch {trainer.current_epoch}, global step "
                                  f"{trainer.global_step}", stop.signal_name, stop.saved) from None
            raise
        fit_s = time.time() - fit_start
        metrics = scalar_metrics(trainer.callback_metrics)
        best_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if cfg.test:
            evaluate_best_checkpoint(trainer, module, fit_data, best_path)
            metrics.update(scalar_metrics(trainer.callback_metrics))
        summary = build_summary(cfg, backbone=backbone, pretrained=pretrained, module=module, datamodule=datamodule,
                                counts=counts, trainer=trainer, best_path=best_path, metrics=metrics, start=start,
                                resumed_from=ckpt_path, started_at=started.at, fit_s=fit_s, best_epoch=best_epoch.epoch)
        collect_sections(summary, [strategy, fit_data, *trainer.callbacks])
        if trainer.is_global_zero:
            write_summary(layout.summary, summary)
            atomic_write(layout.config, OmegaConf.to_yaml(cfg))
        return metrics, summary
    finally:
        finish_wandb()


def evaluate_best_checkpoint(trainer: L.Trainer, module: L.LightningModule, datamodule, best_path: str) -> None:
    if not best_path:
        log.warning("no best checkpoint (checkpointing is off or fit ran no validation); testing the final weights")
    trainer.test(module, datamodule=datamodule, ckpt_path=best_path or None, verbose=False, weights_only=True)
