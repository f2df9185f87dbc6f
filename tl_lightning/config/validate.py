"""Merge the composed config into the schemas and check the values a type cannot."""

import os
from typing import Type

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tl_lightning.config import schema
from tl_lightning.errors import ConfigError, unknown_name


def _describe(exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", None)
    msg = str(getattr(exc, "msg", None) or exc).splitlines()[0]
    return f"config key '{key}': {msg}" if key else msg


def _named_schema(cfg: DictConfig, group: str, table: dict) -> Type:
    name = OmegaConf.select(cfg, f"{group}.name")
    if name is None:
        raise ConfigError(f"config group '{group}' has no 'name'; choose one with {group}=<option>")
    if name not in table:
        raise unknown_name(group, name, table, f"{group}.name")
    return table[name]


def validate_config(cfg: DictConfig) -> DictConfig:
    """Return cfg merged into the schemas and resolved; raise ConfigError on any mistake."""
    try:
        base = OmegaConf.structured(schema.TrainConf)
        base.data = OmegaConf.structured(_named_schema(cfg, "data", schema.DATA_SCHEMAS))
        base.strategy = OmegaConf.structured(_named_schema(cfg, "strategy", schema.STRATEGY_SCHEMAS))
        merged = OmegaConf.merge(base, cfg)
        OmegaConf.resolve(merged)
        missing = sorted(OmegaConf.missing_keys(merged))
    except OmegaConfBaseException as exc:
        raise ConfigError(_describe(exc)) from None
    if missing:
        raise ConfigError(f"config key '{missing[0]}' has no value (it is mandatory)")
    _check_choices(merged)
    return merged


def _check_choice(value, valid, key: str) -> None:
    if value not in valid:
        raise ConfigError(f"config key '{key}': '{value}' is not valid; valid: {', '.join(valid)}")


def _check_positive(value, key: str, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"config key '{key}': must be a positive number, got {value}")


def _check_choices(cfg: DictConfig) -> None:
    _check_choice(cfg.backbone.kind, schema.BACKBONE_KINDS, "backbone.kind")
    _check_choice(cfg.data.augment, schema.AUGMENT_PRESETS, "data.augment")
    _check_choice(cfg.optimizer.name, schema.OPTIMIZERS, "optimizer.name")
    _check_choice(cfg.scheduler.name, schema.SCHEDULERS, "scheduler.name")
    _check_choice(cfg.optimized_metric, schema.METRIC_NAMES, "optimized_metric")
    for key in ("model_checkpoint", "early_stopping"):
        _check_choice(cfg.callbacks[key].monitor, schema.METRIC_NAMES, f"callbacks.{key}.monitor")
        _check_choice(cfg.callbacks[key].mode, ("min", "max"), f"callbacks.{key}.mode")
    _check_positive(cfg.data.samples_per_class, "data.samples_per_class")
    _check_positive(cfg.data.eval_per_class, "data.eval_per_class")
    _check_positive(cfg.data.batch_size, "data.batch_size", allow_none=False)
    _check_positive(cfg.data.image_size, "data.image_size")
    _check_positive(cfg.strategy.lr, "strategy.lr", allow_none=False)
    _check_strategy(cfg)
    _check_files(cfg)
    for key in ("val_fraction", "test_fraction"):
        if not 0.0 < cfg.data[key] < 1.0:
            raise ConfigError(f"config key 'data.{key}': must be between 0 and 1, got {cfg.data[key]}")
    if not 0.0 <= cfg.backbone.head_dropout < 1.0:
        raise ConfigError(f"config key 'backbone.head_dropout': must be in [0, 1), got {cfg.backbone.head_dropout}")


def _check_files(cfg: DictConfig) -> None:
    """Paths the run needs, checked before anything is imported or built."""
    if cfg.backbone.kind == "checkpoint":
        if not cfg.backbone.path:
            raise ConfigError("backbone=checkpoint needs backbone.path=<run dir>/checkpoints/best.ckpt")
        if not os.path.isfile(cfg.backbone.path):
            raise ConfigError(f"backbone.path: no such file: {cfg.backbone.path}")
        if cfg.strategy.name == "scratch":
            raise ConfigError("strategy=scratch starts from random weights; it cannot start from backbone=checkpoint")
    if cfg.resume not in (None, "auto") and not os.path.isfile(cfg.resume):
        raise ConfigError(f"resume: no such checkpoint file: {cfg.resume} (use resume=auto or a .ckpt path)")


def _check_strategy(cfg: DictConfig) -> None:
    st = cfg.strategy
    if not 0.0 < st.layer_decay <= 1.0:
        raise ConfigError(f"config key 'strategy.layer_decay': must be in (0, 1], got {st.layer_decay}")
    if st.name in schema.STAGED_STRATEGIES:
        _check_choice(st.monitor, schema.METRIC_NAMES, "strategy.monitor")
        _check_choice(st.mode, ("min", "max"), "strategy.mode")
        if cfg.scheduler.name == "onecycle":
            raise ConfigError(f"strategy={st.name} changes learning rates per phase; use scheduler.name=cosine or none, "
                              "not onecycle")
    if st.name == "progressive":
        _check_choice(st.schedule, schema.PROGRESSIVE_SCHEDULES, "strategy.schedule")
        _check_positive(st.unfreeze_every, "strategy.unfreeze_every", allow_none=False)
        _check_positive(st.groups_per_phase, "strategy.groups_per_phase", allow_none=False)
        if st.schedule == "phases" and not st.phases:
            raise ConfigError("strategy.schedule=phases needs strategy.phases: a list of "
                              "{groups: [layer groups or parameter regexes], lr, head_lr, max_epochs, patience}")
        for i, phase in enumerate(st.phases or []):
            if not isinstance(phase, DictConfig) or not set(phase.keys()) <= {"groups", "lr", "head_lr", "max_epochs", "patience"}:
                raise ConfigError(f"config key 'strategy.phases[{i}]': expected a mapping with keys groups, lr, head_lr, "
                                  f"max_epochs, patience; got {OmegaConf.to_container(phase) if isinstance(phase, DictConfig) else phase}")
    if st.name == "lp_ft" and st.lp_epochs is None and st.lp_patience is None:
        raise ConfigError("strategy=lp_ft needs strategy.lp_epochs or strategy.lp_patience to end the probe phase")
    if st.name == "ewc":
        _check_choice(st.fisher_source, schema.FISHER_SOURCES, "strategy.fisher_source")
        if st.fisher_source == "source" and cfg.backbone.kind != "checkpoint":
            raise ConfigError("strategy.fisher_source=source needs backbone=checkpoint with a checkpoint made by this "
                              "harness (it records the source data config); use auto, target or uniform")
        _check_positive(st.fisher_samples, "strategy.fisher_samples", allow_none=False)
        _check_positive(st.fisher_batch_size, "strategy.fisher_batch_size", allow_none=False)
