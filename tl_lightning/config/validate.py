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
from tl_lightning.config.terms import TERM_SCHEMAS
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
    _check_unlabeled(merged)
    return merged


# what the unlabelled data shares with the labelled data: the split seed and fractions (so that data of the same
# option splits alike, and the unlabelled training split never holds a labelled val or test sample), the image size
# and the loader settings
UNLABELED_SHARED = ("seed", "val_fraction", "test_fraction", "image_size", "num_workers", "pin_memory")


def unlabeled_config(data) -> DictConfig:
    """The validated data config of ``data.unlabeled``: its option's YAML, the keys it shares with the labelled
    data, then its own overrides. It takes its whole training pool (samples_per_class: null) unless it says
    otherwise; its batch size is ``data.unlabeled_ratio`` x the labelled one."""
    node = data.unlabeled
    if not OmegaConf.is_dict(node) and not isinstance(node, dict) or not node.get("name"):
        raise ConfigError(f"config key 'data.unlabeled': expected a data option with overrides, e.g. "
                          f"{{name: image_folder, root: <folder>}}, got {node!r}")
    for key in ("seed", "unlabeled"):
        if key in node:
            raise ConfigError(f"config key 'data.unlabeled.{key}': not settable; " + (
                "the unlabelled data splits with the run's split seed (data.seed)" if key == "seed" else
                "unlabelled data has no unlabelled data of its own"))
    options = group_options()["data"]
    if node["name"] not in options:
        raise unknown_name("dataset", str(node["name"]), options, "data.unlabeled.name")
    from tl_lightning.config import load_option

    option = load_option("data", node["name"])
    option.samples_per_class = None
    shared = {k: data[k] for k in UNLABELED_SHARED if k in data and (k != "image_size" or "image_size" in option)}
    batch = {"batch_size": max(1, data.unlabeled_ratio) * data.batch_size,
             "eval_batch_size": data.eval_batch_size or data.batch_size}
    try:
        merged = OmegaConf.merge(option, shared, batch, OmegaConf.to_container(node, resolve=True))
        return validate_data(merged)
    except ConfigError as exc:
        raise ConfigError(f"data.unlabeled: {exc}") from None


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
    _check_unlabeled(cfg.data)
    _check_terms(cfg)
    _check_modality(cfg)
    _check_target_monitor(cfg)
    _check_resume(cfg)


def _check_unlabeled(data: DictConfig) -> None:
    """data.unlabeled is a valid data config of the labelled data's modality."""
    if not data.unlabeled:
        return
    unlabeled = unlabeled_config(data)
    data_text = schema.modality_of(data) == "text"
    if (schema.modality_of(unlabeled) == "text") != data_text:
        kinds = ("text", "image") if data_text else ("image", "text")
        raise ConfigError(f"data.unlabeled: data={unlabeled.name} holds {kinds[1]} samples but the labelled "
                          f"data={data.name} holds {kinds[0]} samples; the unlabelled data must be of the same "
                          "modality (images of another size are fine)")


def _check_terms(cfg: DictConfig) -> None:
    """Each ``loss.terms`` entry of a kind the package registers, merged into its kind's schema and checked."""
    for name, node in (cfg.loss.terms or {}).items():
        kind = node.get("kind") if OmegaConf.is_dict(node) else None
        if kind not in TERM_SCHEMAS:
            continue  # checked when built (an unknown kind, or one registered from outside the package)
        key = f"loss.terms.{name}"
        merged = merge_into_schema(lambda k=kind: OmegaConf.structured(TERM_SCHEMAS[k]), node, f"{key}.")
        TERM_SCHEMAS[kind].check_term(merged, cfg, key)


TARGET_STAGE = "target_val/"  # what the unlabelled data's labelled validation split logs (an oracle's monitor)


def _check_target_monitor(cfg: DictConfig) -> None:
    """Selecting on the unlabelled data's labels (an oracle) needs unlabelled data with a labelled val split."""
    for key, metric in monitored_keys(cfg):
        if metric and metric.startswith(TARGET_STAGE) and not cfg.data.get("unlabeled"):
            raise ConfigError(f"config key '{key}': '{metric}' selects on labelled target validation (an oracle) "
                              "but there is no target: set data.unlabeled={name: <data option>, ...}, or monitor "
                              "val/acc (source validation, no target labels)")


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
    data_text = schema.modality_of(cfg.data) == "text"
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
