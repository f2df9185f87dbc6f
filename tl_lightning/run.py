"""The task: build backbone, data, module, callbacks, loggers and trainer; fit; test the best checkpoint."""

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
from tl_lightning.errors import ConfigError
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

    run_config = OmegaConf.to_container(cfg, resolve=True)
    module = TransferModule(backbone, datamodule.num_classes, strategy, cfg.optimizer, cfg.scheduler,
                            class_names=datamodule.class_names, head_dropout=cfg.backbone.head_dropout,
                            run_config=run_config)
    apply_model_switches(module, cfg.trainer)
    counts = module.parameter_counts()
    run_name = f"{cfg.strategy.name}-{backbone.name}-{cfg.data.name}-spc{cfg.data.samples_per_class}-s{cfg.seed}"
    loggers = build_loggers(cfg.logger, output_dir, run_config, group, run_name)
    try:
        for logger in loggers:
            logger.log_hyperparams({**run_config, "params": counts})
        callbacks = build_callbacks(cfg.callbacks, output_dir, has_logger=bool(loggers)) + strategy.callbacks()
        trainer = L.Trainer(**_trainer_kwargs(cfg), callbacks=callbacks, logger=loggers or False,
                            default_root_dir=output_dir)
        trainer.fit(module, datamodule=datamodule)
        fit_metrics = _scalar_metrics(trainer.callback_metrics)
        test_metrics: Dict[str, float] = {}
        best_path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if cfg.test:
            ckpt = best_path or None
            if ckpt is None:
                log.warning("no best checkpoint (checkpointing is off or fit ran no validation); testing the final weights")
            trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
            test_metrics = _scalar_metrics(trainer.callback_metrics)
        metrics = {**fit_metrics, **test_metrics}
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
        }
        if trainer.is_global_zero:
            write_summary(output_dir, summary)
            OmegaConf.save(cfg, os.path.join(output_dir, "config_resolved.yaml"))
        return metrics, summary
    finally:
        finish_wandb()


def write_summary(output_dir: str, summary: Dict[str, Any]) -> str:
    path = os.path.join(output_dir, "summary.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(summary, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path
