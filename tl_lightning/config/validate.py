"""Merge the composed config into the schemas and check the values a type cannot.

Types, unknown keys and missing values are the schemas' job (tl_lightning/config/schema.py); this adds
ranges, choices and the paths a run needs, all before torch is imported. Metric names are checked
once the module exists (``check_metric_names``): any metric it logs may be monitored.
"""

import dataclasses
import os
import sys
from typing import Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tl_lightning.config import group_options, schema
from tl_lightning.errors import ConfigError, check_file, unknown_name


def _describe(exc: OmegaConfBaseException) -> str:
    from tl_lightning.config.suggest import rewrite

    key = getattr(exc, "full_key", None)
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
        if name not in options[group]:  # the option files and the code registries agree (tests/test_config.py)
            raise unknown_name(group, name, options[group], f"{group}.name")
    def base():
        train = OmegaConf.structured(schema.TrainConf)
        for group in ("data", "strategy"):  # typed Any in TrainConf: each option brings its own schema
            train[group] = OmegaConf.structured(option_schema(group, cfg[group]))
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
        raise ConfigError(_describe(exc)) from None
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
    merged = merge_into_schema(lambda: OmegaConf.structured(option_schema("data", node)), node, "data.")
    check_data(merged)
    return merged


def validate_tool_config(cfg: DictConfig, schema_type: type) -> DictConfig:
    """An eval/predict/export config merged into its schema and resolved (its ``data``, if any, stays as given:
    ``validate_data`` checks it once the checkpoint's recorded data is known)."""
    merged = merge_into_schema(lambda: OmegaConf.structured(schema_type), cfg, hints={
        "ckpt_path": "; e.g. ckpt_path=<run dir>/checkpoints/best.ckpt"})
    check_file(merged.ckpt_path, "ckpt_path", checkpoint=True)
    if "trainer" in merged:
        _check_trainer(merged.trainer)
    return merged


def option_schema(group: str, node) -> type:
    """The schema of a data/strategy node (or option name): its type, or the schema its option file names."""
    if isinstance(node, str):
        node = OmegaConf.create({"name": node})
    node_type = OmegaConf.get_type(node)
    if node_type is not None and dataclasses.is_dataclass(node_type):
        return node_type
    from hydra.core.config_store import ConfigStore

    from tl_lightning.config import CONFIG_DIR

    option = OmegaConf.load(os.path.join(CONFIG_DIR, group, f"{node.name}.yaml"))
    name = next(d for d in option.defaults if isinstance(d, str) and d.startswith("schema"))
    return OmegaConf.get_type(ConfigStore.instance().load(f"{group}/{name}.yaml").node)


def check_choice(value, valid, key: str) -> None:
    if value not in valid:
        raise ConfigError(f"config key '{key}': '{value}' is not valid; valid: "
                          f"{', '.join('null' if v is None else str(v) for v in valid)}")


def check_positive(value, key: str, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"config key '{key}': must be a positive number, got {value}")


def _check_values(cfg: DictConfig) -> None:
    from tl_lightning.backbones.registry import BACKBONES

    check_choice(cfg.backbone.kind, BACKBONES.names(), "backbone.kind")
    check_data(cfg.data)
    _check_modality(cfg)
    check_choice(cfg.backbone.pooling, ("mean", "cls"), "backbone.pooling")
    check_choice(cfg.backbone.truncation, ("head", "head_tail"), "backbone.truncation")
    if cfg.backbone.max_length is not None and cfg.backbone.max_length < 8:
        raise ConfigError(f"config key 'backbone.max_length': must be >= 8 tokens, got {cfg.backbone.max_length}")
    check_choice(cfg.optimizer.name, schema.OPTIMIZERS, "optimizer.name")
    check_choice(cfg.scheduler.name, schema.SCHEDULERS, "scheduler.name")
    for key in ("model_checkpoint", "early_stopping", "fairness"):
        check_choice(cfg.callbacks[key].mode, ("min", "max"), f"callbacks.{key}.mode")
    fairness = cfg.callbacks.fairness
    check_choice(fairness.action, schema.FAIRNESS_ACTIONS, "callbacks.fairness.action")
    check_choice(fairness.after_rollback, ("continue", "stop"), "callbacks.fairness.after_rollback")
    check_positive(fairness.patience, "callbacks.fairness.patience", allow_none=False)
    check_positive(cfg.callbacks.plateau.patience, "callbacks.plateau.patience", allow_none=False)
    check_positive(cfg.callbacks.saliency.per_class, "callbacks.saliency.per_class", allow_none=False)
    check_positive(cfg.callbacks.saliency.max_classes, "callbacks.saliency.max_classes", allow_none=False)
    check_choice(cfg.callbacks.plateau.mode, ("min", "max"), "callbacks.plateau.mode")
    if not 0.0 < cfg.callbacks.collapse.max_tv <= 1.0:
        raise ConfigError(f"config key 'callbacks.collapse.max_tv': a total-variation distance in (0, 1], got "
                          f"{cfg.callbacks.collapse.max_tv}")
    if fairness.max_gap is not None and fairness.mode != "min":
        raise ConfigError("callbacks.fairness.max_gap bounds a gap (lower is better): it needs callbacks.fairness.mode=min")
    check_positive(cfg.strategy.lr, "strategy.lr", allow_none=False)
    if cfg.strategy.backbone_lr_mult < 0:
        raise ConfigError(f"config key 'strategy.backbone_lr_mult': must be >= 0 (0: the backbone does not move), "
                          f"got {cfg.strategy.backbone_lr_mult}")
    _check_trainer(cfg.trainer)
    _check_strategy(cfg)
    _check_files(cfg)
    if not 0.0 <= cfg.backbone.head_dropout < 1.0:
        raise ConfigError(f"config key 'backbone.head_dropout': must be in [0, 1), got {cfg.backbone.head_dropout}")
    check_choice(cfg.loss.weighting, ("none", "inverse", "effective"), "loss.weighting")
    if not 0.0 < cfg.loss.beta < 1.0:
        raise ConfigError(f"config key 'loss.beta': must be in (0, 1) (e.g. 0.999), got {cfg.loss.beta}")
    has_groups = (cfg.data.get("shortcut") is not None and cfg.data.shortcut.kind is not None) or \
        bool(cfg.data.get("group_column")) or cfg.data.name == "multi_source"  # each source is a group
    if cfg.loss.name == "group_dro" and not has_groups:
        raise ConfigError(f"loss=group_dro needs groups in the data: {GROUP_SOURCES}")
    if cfg.data.sampler == "group_balanced" and not has_groups:
        raise ConfigError(f"data.sampler=group_balanced needs groups in the data: {GROUP_SOURCES} "
                          "(data.sampler=balanced balances classes)")
    if cfg.loss.eta <= 0:
        raise ConfigError(f"config key 'loss.eta': must be a positive number, got {cfg.loss.eta}")
    if cfg.loss.gamma < 0:
        raise ConfigError(f"config key 'loss.gamma': must be >= 0 (0: cross-entropy), got {cfg.loss.gamma}")
    if not 0.0 <= cfg.loss.label_smoothing < 1.0:
        raise ConfigError(f"config key 'loss.label_smoothing': must be in [0, 1), got {cfg.loss.label_smoothing}")


def _check_modality(cfg: DictConfig) -> None:
    """Text data needs a text backbone and images an image backbone (a checkpoint is checked once loaded)."""
    from tl_lightning.backbones.registry import TEXT_KINDS

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


PRECISIONS = ("64", "64-true", "32", "32-true", "16", "16-mixed", "bf16", "bf16-mixed", "16-true", "bf16-true",
              "transformer-engine", "transformer-engine-float16")


def gpu_visible() -> bool:
    """An NVIDIA or AMD GPU device node exists, or Apple's MPS may (checked without importing torch)."""
    if sys.platform == "darwin":  # accelerator=gpu means MPS there; torch decides
        return True
    return any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd")) or \
        os.path.isdir("/proc/driver/nvidia/gpus") and bool(os.listdir("/proc/driver/nvidia/gpus"))


def _check_trainer(tr: DictConfig) -> None:
    devices = tr.devices
    ok = devices == "auto" or devices == -1 or (isinstance(devices, int) and devices >= 1) or \
        (isinstance(devices, str) and devices.strip("-").isdigit() and int(devices) != 0) or \
        (isinstance(devices, str) and "," in devices and all(d.strip().isdigit() for d in devices.split(","))) or \
        (isinstance(devices, (list, ListConfig)) and len(devices) > 0 and all(isinstance(d, int) and d >= 0
                                                                               for d in devices))
    if not ok:
        raise ConfigError(f"config key 'trainer.devices': '{devices}' is not valid; valid: a count >= 1, -1 (all), "
                          "auto, or a list of device ids such as [0,1]")
    if str(tr.precision) not in PRECISIONS:
        raise ConfigError(f"config key 'trainer.precision': '{tr.precision}' is not valid; valid: {', '.join(PRECISIONS)}")
    if tr.max_epochs == 0 or tr.max_epochs < -1 or (tr.max_epochs == -1 and tr.max_steps <= 0 and not tr.max_time):
        raise ConfigError(f"config key 'trainer.max_epochs': must be >= 1 (or -1 with trainer.max_steps or "
                          f"trainer.max_time), got {tr.max_epochs}")
    if tr.accelerator in ("gpu", "cuda") and not gpu_visible():
        raise ConfigError(f"trainer.accelerator={tr.accelerator} but this machine has no GPU; use trainer=cpu "
                          "(or trainer=ddp_cpu for two processes)")


GROUP_SOURCES = ("data.shortcut.kind=tint|patch (any image data), data.groups_csv=<file> data.group_column=<column> "
                 "(data=image_folder), data.group_column=<column> (data=text_csv), data=multi_source (its sources)")


def _check_files(cfg: DictConfig) -> None:
    """Paths the run needs, checked before anything is imported or built."""
    if cfg.backbone.kind == "checkpoint":
        if not cfg.backbone.path:
            raise ConfigError("backbone=checkpoint needs backbone.path=<run dir>/checkpoints/best.ckpt")
        check_file(cfg.backbone.path, "backbone.path", checkpoint=True)
        if cfg.strategy.name == "scratch":
            raise ConfigError("strategy=scratch starts from random weights; it cannot start from backbone=checkpoint")
    if cfg.backbone.get("weights"):
        check_file(cfg.backbone.weights, "backbone.weights")
    if cfg.resume not in (None, "auto"):
        if os.path.isdir(cfg.resume):
            raise ConfigError(f"resume: {cfg.resume} is a directory; give its checkpoints/last.ckpt, or continue that "
                              f"run with resume=auto hydra.run.dir={cfg.resume}")
        if not os.path.exists(cfg.resume):
            raise ConfigError(f"resume: no such checkpoint file: {cfg.resume} (use resume=auto or a .ckpt path)")
        check_file(cfg.resume, "resume", checkpoint=True)


def check_data(data: DictConfig) -> None:
    """The values of a data node (already merged into its schema) and the files it names."""
    if "augment" in data:
        check_choice(data.augment, schema.AUGMENT_PRESETS, "data.augment")
        check_positive(data.image_size, "data.image_size")
    check_positive(data.samples_per_class, "data.samples_per_class")
    check_positive(data.eval_per_class, "data.eval_per_class")
    check_positive(data.batch_size, "data.batch_size", allow_none=False)
    if data.num_workers < 0:
        raise ConfigError(f"config key 'data.num_workers': must be >= 0 (0: load in the main process), "
                          f"got {data.num_workers}")
    for key in ("val_fraction", "test_fraction"):
        if not 0.0 < data[key] < 1.0:
            raise ConfigError(f"config key 'data.{key}': must be between 0 and 1, got {data[key]}")
    check_choice(data.sampler, schema.SAMPLERS, "data.sampler")
    if "groups_csv" in data:
        if data.groups_csv and not data.group_column:
            raise ConfigError(f"data.groups_csv={data.groups_csv} needs data.group_column=<its column holding the group>")
        if data.group_column and not data.groups_csv:
            raise ConfigError(f"data.group_column={data.group_column} is a column of data.groups_csv: give "
                              "data.groups_csv=<file with one row per image>")
        if data.groups_csv:
            check_file(data.groups_csv, "data.groups_csv")
            if data.shortcut.kind is not None:
                raise ConfigError("data.groups_csv and data.shortcut both define the groups; use one of them")
    if "shortcut" in data:
        check_choice(data.shortcut.kind, schema.SHORTCUT_KINDS, "data.shortcut.kind")
        if not 0.0 <= data.shortcut.train_correlation <= 1.0:
            raise ConfigError(f"config key 'data.shortcut.train_correlation': a probability in [0, 1], got "
                              f"{data.shortcut.train_correlation}")
    imbalance = data.imbalance
    check_choice(imbalance.order, schema.IMBALANCE_ORDERS, "data.imbalance.order")
    if imbalance.ratio is not None and imbalance.ratio < 1:
        raise ConfigError(f"config key 'data.imbalance.ratio': the head class's budget over the tail's, >= 1 (1: "
                          f"balanced), got {imbalance.ratio}")
    if imbalance.ratio is not None and imbalance.counts is not None:
        raise ConfigError("data.imbalance: give ratio (an exponential profile) or counts (one per class), not both")
    if imbalance.counts is not None and (not imbalance.counts or min(imbalance.counts) < 1):
        raise ConfigError(f"config key 'data.imbalance.counts': one budget >= 1 per class, got {list(imbalance.counts)}")
    if imbalance.ratio is not None and data.samples_per_class is None:
        raise ConfigError(f"data.imbalance.ratio needs data.samples_per_class (the head class's budget), e.g. "
                          f"data.samples_per_class=100 data.imbalance.ratio={imbalance.ratio:g}")
    root = data.get("root")
    if data.name == "image_folder" and not root:
        raise ConfigError("data=image_folder needs data.root=<folder of class subfolders, or of train/ val/ test/>")
    if data.name == "text_folder" and not root:
        raise ConfigError("data=text_folder needs data.root=<folder>/<class>/<file>.txt")
    if data.name == "text_csv":
        if not data.path and not data.train_path:
            raise ConfigError("data=text_csv needs data.path=<file.csv|.tsv|.jsonl> (split by seed) or "
                              "data.train_path=... [data.val_path=...] [data.test_path=...]")
        if data.path and data.train_path:
            raise ConfigError("data=text_csv: give data.path (one file, split by seed) or data.train_path, not both")
        for key in ("path", "train_path", "val_path", "test_path"):
            if data[key]:
                check_file(data[key], f"data.{key}")
    if root and not data.get("download", False) and not os.path.isdir(root):
        what = "is a file, not a directory" if os.path.exists(root) else "no such directory"
        hint = "; data.download=true creates it and downloads the data (needs internet)"
        if data.name in ("image_folder", "text_folder"):
            hint = ""
        elif data.name == "fortunes":
            hint = "; install Debian's fortunes package (apt-get install fortunes; make data does it)"
        raise ConfigError(f"data.root: {root}: {what} (data={data.name}){hint}")


def _check_strategy(cfg: DictConfig) -> None:
    st = cfg.strategy
    if not 0.0 < st.layer_decay <= 1.0:
        raise ConfigError(f"config key 'strategy.layer_decay': must be in (0, 1], got {st.layer_decay}")
    check_choice(st.bn, schema.BN_POLICIES, "strategy.bn")
    if st.name == "scratch" and st.bn != "train":
        raise ConfigError(f"strategy=scratch learns BatchNorm statistics from random weights; strategy.bn={st.bn} "
                          "would keep their initial values (use strategy.bn=train)")
    if st.get("train_bn") and st.bn == "freeze":
        raise ConfigError("strategy.train_bn=true trains BatchNorm affine parameters, strategy.bn=freeze forbids it; "
                          "choose one")
    if isinstance(st, DictConfig) and issubclass(OmegaConf.get_type(st) or object, schema.PhasedConf):
        check_choice(st.mode, ("min", "max"), "strategy.mode")
        check_choice(st.phase_schedule, schema.PHASE_SCHEDULES, "strategy.phase_schedule")
        if st.phase_schedule == "restart" and cfg.scheduler.name != "cosine":
            raise ConfigError(f"strategy.phase_schedule=restart restarts the cosine schedule every phase; it needs "
                              f"scheduler.name=cosine, not {cfg.scheduler.name}")
        if cfg.scheduler.name == "onecycle":
            raise ConfigError(f"strategy={st.name} changes learning rates per phase; use scheduler.name=cosine or none, "
                              "not onecycle")
    if st.name == "progressive":
        check_choice(st.schedule, schema.PROGRESSIVE_SCHEDULES, "strategy.schedule")
        check_positive(st.unfreeze_every, "strategy.unfreeze_every", allow_none=False)
        check_positive(st.groups_per_phase, "strategy.groups_per_phase", allow_none=False)
        if st.schedule == "phases" and not st.phases:
            raise ConfigError("strategy.schedule=phases needs strategy.phases: a list of "
                              "{groups: [layer groups or parameter regexes], lr, head_lr, max_epochs, patience}")
        phase_keys = {"groups", "lr", "head_lr", "max_epochs", "patience"}
        for i, phase in enumerate(st.phases or []):
            if not isinstance(phase, DictConfig) or not set(phase.keys()) <= phase_keys:
                got = OmegaConf.to_container(phase) if isinstance(phase, DictConfig) else phase
                raise ConfigError(f"config key 'strategy.phases[{i}]': expected a mapping with keys groups, lr, head_lr, "
                                  f"max_epochs, patience; got {got}")
    if st.name == "lp_ft":
        if st.lp_epochs is None and st.lp_patience is None:
            raise ConfigError("strategy=lp_ft needs strategy.lp_epochs or strategy.lp_patience to end the probe phase")
        check_positive(st.ft_lr, "strategy.ft_lr", allow_none=False)
        check_positive(st.ft_head_lr, "strategy.ft_head_lr")
    if st.name == "ewc":
        check_choice(st.fisher_source, schema.FISHER_SOURCES, "strategy.fisher_source")
        if st.fisher_source == "source" and cfg.backbone.kind != "checkpoint":
            raise ConfigError("strategy.fisher_source=source needs backbone=checkpoint with a checkpoint made by this "
                              "harness (it records the source data config); use auto, target or uniform")
        check_positive(st.fisher_samples, "strategy.fisher_samples", allow_none=False)
        check_positive(st.fisher_batch_size, "strategy.fisher_batch_size", allow_none=False)
    if st.name == "protonet":
        for key in ("ways", "shots", "queries", "episodes_per_epoch", "eval_queries"):
            check_positive(st[key], f"strategy.{key}", allow_none=False)
        check_positive(st.eval_ways, "strategy.eval_ways")
        check_positive(st.source_per_class, "strategy.source_per_class")
        if st.eval_episodes < 0:
            raise ConfigError(f"config key 'strategy.eval_episodes': episodes after testing, >= 0 (0: none), got "
                              f"{st.eval_episodes}")
        if st.ways < 2:
            raise ConfigError(f"config key 'strategy.ways': an episode needs at least 2 classes, got {st.ways}")
    if st.name in ("lora", "ia3"):
        if not cfg.backbone.pretrained:
            raise ConfigError(f"strategy={st.name} adapts pretrained weights and saves only the adapters, which need the "
                              "base weights again to load; backbone.pretrained=false has no base to reload (use finetune)")
        if st.layer_decay != 1.0:
            raise ConfigError(f"strategy={st.name} trains adapters in one optimizer group (lr * backbone_lr_mult); "
                              f"strategy.layer_decay={st.layer_decay} has nothing to act on (leave it at 1.0)")
    if st.name == "lora":
        if st.r <= 0:
            raise ConfigError(f"config key 'strategy.r': the adapters' rank must be a positive integer (e.g. 4, 8, 16), "
                              f"got {st.r}")
        check_positive(st.alpha, "strategy.alpha", allow_none=False)
        if not 0.0 <= st.dropout < 1.0:
            raise ConfigError(f"config key 'strategy.dropout': must be in [0, 1), got {st.dropout}")


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
