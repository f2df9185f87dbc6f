"""Merge the composed config into the schemas and check the values a type cannot.

Types, unknown keys and missing values are the schemas' job (tl_lightning/config/schema.py); this adds
ranges, choices and the paths a run needs, all before torch is imported. Metric names are checked
once the module exists (``check_metric_names``): any metric it logs may be monitored.
"""

import os
from typing import Iterable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tl_lightning.config import group_options, schema
from tl_lightning.config.checks import check_choice, check_positive, run_checks
from tl_lightning.config.suggest import rewrite
from tl_lightning.errors import ConfigError, check_file, unknown_name
from tl_lightning.registry import DATAMODULES, STRATEGIES, TEXT_KINDS

__all__ = ["check_choice", "check_positive", "validate_config", "validate_data", "validate_tool_config"]


def _describe(exc: OmegaConfBaseException, prefix: str = "") -> str:
    """One line for a merge failure; ``prefix``: where the merged node sits (``data.`` for a data node alone)."""
    key = getattr(exc, "full_key", None)
    key = f"{prefix}{key}" if key and not str(key).startswith(prefix) else key
    msg = str(getattr(exc, "msg", None) or exc).splitlines()[0]
    text = f"config key '{key}': {msg}" if key else msg
    return rewrite(text) or text


def validate_config(cfg: DictConfig) -> DictConfig:
    """Return cfg merged into the schemas and resolved; raise ConfigError on any mistake."""
    options = group_options()
    for group in ("data", "strategy"):
        name = OmegaConf.select(cfg, f"{group}.name")
        if name is None:
            raise ConfigError(f"config group '{group}' has no 'name'; choose one with {group}=<option>")
        registered = (DATAMODULES if group == "data" else STRATEGIES).names()  # registered from outside the package
        if name not in options[group] and name not in registered:  # option files and registries agree (test_config)
            raise unknown_name(group, name, sorted({*options[group], *registered}), f"{group}.name")
    def base():
        train = OmegaConf.structured(schema.TrainConf)
        for group in ("data", "strategy"):  # typed Any in TrainConf: each option brings its own schema
            train[group] = OmegaConf.structured(schema.schema_of(group, cfg[group]))
        return train

    merged = merge_into_schema(base, cfg)
    _check_values(merged)
    return merged


def merge_into_schema(base, cfg, prefix: str = "", hints=None) -> DictConfig:
    """``cfg`` merged into the schema node ``base()`` builds, resolved, with no missing value; every failure is a
    ConfigError naming the key (``prefix`` + its path; ``hints``: key -> text added to a missing key's line)."""
    try:
        # a plain copy: OmegaConf keeps the extra keys of a node that already has the schema's type (Hydra's
        # `+key=value` adds them even in struct mode), and the schemas must refuse them
        merged = OmegaConf.merge(base(), OmegaConf.to_container(cfg, resolve=False))
        OmegaConf.resolve(merged)
        missing = sorted(OmegaConf.missing_keys(merged))
    except OmegaConfBaseException as exc:
        raise ConfigError(_describe(exc, prefix)) from None
    if missing:
        raise ConfigError(f"config key '{prefix}{missing[0]}' has no value (it is mandatory)"
                          + (hints or {}).get(missing[0], ""))
    return merged


def validate_data(node) -> DictConfig:
    """A data node (a composed option, or a run's recorded data config) merged into its schema and checked."""
    if not isinstance(node, DictConfig):
        node = OmegaConf.create(node)
    name = OmegaConf.select(node, "name")
    options = group_options()["data"]
    if name not in options:
        raise unknown_name("dataset", str(name), options, "data.name")
    merged = merge_into_schema(lambda: OmegaConf.structured(schema.schema_of("data", node)), node, "data.")
    run_checks(merged)
    return merged


def validate_recorded_data(node, ckpt_path: str) -> DictConfig:
    """``validate_data`` of the data config a checkpoint records: a mistake in it says that it came from the
    checkpoint (another version of the harness wrote it, or it was edited), not from the command line."""
    try:
        return validate_data(node)
    except ConfigError as exc:
        raise ConfigError(f"{ckpt_path} records a data config this version cannot use ({exc}); it was written by "
                          "another version of tl-lightning or edited: choose the data with data=<option>") from None


def validate_tool_config(cfg: DictConfig, schema_type: type) -> DictConfig:
    """An eval/predict/export config merged into its schema and resolved (its ``data``, if any, stays as given:
    ``validate_data`` checks it once the checkpoint's recorded data is known)."""
    merged = merge_into_schema(lambda: OmegaConf.structured(schema_type), cfg, hints={
        "ckpt_path": "; e.g. ckpt_path=<run dir>/checkpoints/best.ckpt"})
    check_file(merged.ckpt_path, "ckpt_path", checkpoint=True)
    if "trainer" in merged:
        run_checks(merged.trainer)
    run_checks(merged.paths)
    return merged


def _check_values(cfg: DictConfig) -> None:
    """Each group's own checks (the ``check`` methods of its schema), then what spans groups."""
    for key in ("backbone", "data", "strategy", "loss", "optimizer", "scheduler", "trainer", "callbacks", "paths"):
        run_checks(cfg[key], cfg)
    _check_modality(cfg)
    _check_resume(cfg)


def _check_modality(cfg: DictConfig) -> None:
    """Text data needs a text backbone and images an image backbone (a checkpoint is checked once loaded)."""
    in_chans = cfg.backbone.in_chans
    if in_chans is not None:
        if cfg.backbone.kind in TEXT_KINDS or cfg.backbone.kind == "checkpoint":
            raise ConfigError(f"config key 'backbone.in_chans': only for image backbones built by name (not "
                              f"backbone.kind={cfg.backbone.kind}); set it to null")
        if not 1 <= in_chans <= 64:
            raise ConfigError(f"config key 'backbone.in_chans': image channels between 1 and 64 (1: grayscale), "
                              f"got {in_chans}")
    if cfg.backbone.kind == "checkpoint":
        return
    data_text = issubclass(OmegaConf.get_type(cfg.data) or object, schema.TextDataConf)
    backbone_text = cfg.backbone.kind in TEXT_KINDS
    if data_text != backbone_text:
        data_kind, wanted = ("text", "backbone=minilm or backbone=hf") if data_text else \
            ("image", "an image backbone such as backbone=efficientnet_lite0")
        raise ConfigError(f"data={cfg.data.name} holds {data_kind} samples but backbone={cfg.backbone.kind} takes "
                          f"{'text' if backbone_text else 'image'} input; use {wanted}")


def _check_resume(cfg: DictConfig) -> None:
    if cfg.resume not in (None, "auto"):
        if os.path.isdir(cfg.resume):
            raise ConfigError(f"resume: {cfg.resume} is a directory; give its checkpoints/last.ckpt, or continue that "
                              f"run with resume=auto hydra.run.dir={cfg.resume}")
        if not os.path.exists(cfg.resume):
            raise ConfigError(f"resume: no such checkpoint file: {cfg.resume} (use resume=auto or a .ckpt path)")
        check_file(cfg.resume, "resume", checkpoint=True)


def monitored_keys(cfg: DictConfig) -> Iterable[tuple]:
    """(config key, metric name) of every place that names a metric to watch."""
    yield "optimized_metric", cfg.optimized_metric
    for key in ("model_checkpoint", "early_stopping"):
        node = cfg.callbacks[key]
        if node.enabled and node.monitor is not None:
            yield f"callbacks.{key}.monitor", node.monitor
    if "monitor" in cfg.strategy:
        yield "strategy.monitor", cfg.strategy.monitor
    if cfg.callbacks.fairness.enabled:
        yield "callbacks.fairness.monitor", cfg.callbacks.fairness.monitor


def check_metric_names(cfg: DictConfig, logged: Iterable[str]) -> None:
    """Every monitored metric must be one the module logs (``TransferModule.logged_metric_names``)."""
    logged = set(logged)
    for key, metric in monitored_keys(cfg):
        if metric not in logged:
            stages = sorted(n for n in logged if "/acc_class/" not in n)
            raise ConfigError(f"config key '{key}': '{metric}' is not a metric this run logs; valid: "
                              f"{', '.join(stages)}, or <stage>/acc_class/<class name>")
