"""Structured schemas for the composed config.

The composed config is merged into these dataclasses before anything heavy is
imported, so a misspelled key or a wrong type fails at start-up with the key's full
path. Groups whose fields depend on the chosen option (data, strategy) pick their
schema by name from the tables at the bottom.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


@dataclass
class BackboneConf:
    kind: str = MISSING  # torchvision | timm | efficientnet_lite0
    name: str = MISSING  # architecture name inside that kind
    pretrained: bool = True
    weights: Optional[str] = None  # a state-dict file to load instead of the published weights
    path: Optional[str] = None  # kind=checkpoint: a checkpoint of this harness (<run dir>/checkpoints/best.ckpt)
    head_dropout: float = 0.0


@dataclass
class DataConf:
    name: str = MISSING
    root: Optional[str] = None
    download: bool = False
    seed: int = 0
    samples_per_class: Optional[int] = None  # labeled budget per class; null = all
    val_fraction: float = 0.1  # of the training pool, stratified
    test_fraction: float = 0.2  # only for datasets without an official test split
    eval_per_class: Optional[int] = None  # cap on val and test samples per class
    classes: Optional[List[Any]] = None  # keep a subset of classes (ids or names)
    image_size: Optional[int] = None  # input resolution; null = the backbone's native size
    augment: str = "basic"  # none | basic | strong
    batch_size: int = 64  # per device
    eval_batch_size: Optional[int] = None
    num_workers: int = 0
    pin_memory: bool = False


@dataclass
class SyntheticDataConf(DataConf):
    num_classes: int = 4
    per_class: int = 60
    native_size: int = 32  # size of the generated images
    channels: int = 3


@dataclass
class StrategyConf:
    name: str = MISSING
    lr: float = 1e-3  # head learning rate
    backbone_lr_mult: float = 1.0  # backbone lr = lr * backbone_lr_mult
    layer_decay: float = 1.0  # lr of a backbone group = backbone lr * layer_decay ** (its depth from the top)


@dataclass
class LinearProbeConf(StrategyConf):
    cache_features: bool = True  # with data.augment=none: compute features once, train the head on them


@dataclass
class PhasedConf(StrategyConf):
    """Shared by strategies with phases: plateau detection and warmup of newly unfrozen groups."""

    monitor: str = "${optimized_metric}"  # a phase with patience ends when this stops improving
    mode: str = "max"
    min_delta: float = 0.0
    warmup_steps: int = 0  # linear warmup of each newly unfrozen group, in optimizer steps


@dataclass
class ProgressiveConf(PhasedConf):
    layer_decay: float = 0.385  # ULMFiT's 1/2.6 per group, from the top down
    schedule: str = "epochs"  # epochs | plateau | phases
    unfreeze_every: int = 1  # schedule=epochs: epochs per phase
    groups_per_phase: int = 1  # epochs/plateau: layer groups unfrozen per phase, top first
    patience: int = 2  # schedule=plateau: epochs without improvement that end a phase
    phases: Optional[List[Any]] = None  # schedule=phases: [{groups: [...], lr, head_lr, max_epochs, patience}]
    train_bn: bool = False  # BatchNorm affine parameters train in frozen groups too (statistics stay frozen)


@dataclass
class LPFTConf(PhasedConf):
    lp_epochs: Optional[int] = 3  # linear-probe epochs (null: until the metric plateaus)
    lp_patience: Optional[int] = None  # end the probe phase after this many epochs without improvement
    ft_lr: float = 1e-4  # lr of head and backbone in the fine-tuning phase


@dataclass
class L2SPConf(StrategyConf):
    alpha: float = 1.0  # pull of the backbone towards its starting weights
    beta: float = 0.01  # L2 on the new head's weights


@dataclass
class EWCConf(StrategyConf):
    lam: float = 1.0  # lambda; with normalize=true on the same scale as l2sp's alpha
    fisher_source: str = "auto"  # auto | source | target | uniform
    fisher_samples: int = 200
    fisher_batch_size: int = 1  # 1: per-sample squared gradients; larger: faster, approximate
    normalize: bool = True  # rescale the Fisher to mean 1
    gamma: float = 1.0  # online EWC: F <- gamma * F_old + F_new when the source run used EWC


@dataclass
class OptimizerConf:
    name: str = "adamw"  # adamw | sgd
    weight_decay: float = 0.01
    momentum: float = 0.9  # sgd only
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw only
    nesterov: bool = False


@dataclass
class SchedulerConf:
    name: str = "cosine"  # cosine | onecycle | none
    warmup_epochs: float = 0.0  # cosine only; may be fractional
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of the peak lr
    pct_start: float = 0.3  # onecycle only


@dataclass
class TrainerConf:
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: Any = "32-true"
    max_epochs: int = 10
    min_epochs: Optional[int] = None
    max_steps: int = -1
    max_time: Optional[str] = None
    limit_train_batches: Optional[float] = None
    limit_val_batches: Optional[float] = None
    limit_test_batches: Optional[float] = None
    overfit_batches: float = 0.0
    fast_dev_run: Any = False
    val_check_interval: Optional[float] = None
    check_val_every_n_epoch: Optional[int] = 1
    num_sanity_val_steps: Optional[int] = None
    log_every_n_steps: Optional[int] = None
    accumulate_grad_batches: int = 1
    gradient_clip_val: Optional[float] = None
    gradient_clip_algorithm: Optional[str] = None
    deterministic: Any = None
    benchmark: Optional[bool] = None
    sync_batchnorm: bool = False
    detect_anomaly: bool = False
    enable_model_summary: Optional[bool] = None
    profiler: Optional[str] = None
    # not Trainer arguments: applied to the model by the harness
    channels_last: bool = False  # NHWC memory format for convolutional backbones (faster on tensor cores)
    compile: bool = False  # torch.compile the backbone (nn.Module.compile keeps checkpoint keys unchanged)


MODEL_SWITCHES = ("channels_last", "compile")  # TrainerConf fields that are not passed to lightning.Trainer


@dataclass
class WandbConf:
    project: str = "tl-lightning"
    entity: Optional[str] = None
    name: Optional[str] = None
    group: Optional[str] = None  # default: the sweep's name in a multirun
    tags: List[str] = field(default_factory=list)
    offline: bool = True  # WANDB_MODE=online also turns it online
    log_model: bool = False
    job_type: str = "train"


@dataclass
class CsvConf:
    name: str = "csv"


@dataclass
class TensorboardConf:
    name: str = "tensorboard"


@dataclass
class LoggerConf:
    wandb: Optional[WandbConf] = None
    csv: Optional[CsvConf] = None
    tensorboard: Optional[TensorboardConf] = None


@dataclass
class ModelCheckpointConf:
    enabled: bool = True
    monitor: str = "${optimized_metric}"
    mode: str = "max"
    save_last: bool = True
    save_top_k: int = 1


@dataclass
class EarlyStoppingConf:
    enabled: bool = True
    monitor: str = "${optimized_metric}"
    mode: str = "max"
    patience: int = 5
    min_delta: float = 0.0


@dataclass
class SwitchConf:
    enabled: bool = True


@dataclass
class LrMonitorConf:
    enabled: bool = True
    logging_interval: str = "step"


@dataclass
class CallbacksConf:
    model_checkpoint: ModelCheckpointConf = field(default_factory=ModelCheckpointConf)
    early_stopping: EarlyStoppingConf = field(default_factory=EarlyStoppingConf)
    lr_monitor: LrMonitorConf = field(default_factory=LrMonitorConf)
    rich_progress_bar: SwitchConf = field(default_factory=SwitchConf)
    confusion_matrix: SwitchConf = field(default_factory=SwitchConf)
    # any further Lightning callbacks, each a {_target_: ..., ...} node
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class PathsConf:
    root_dir: str = MISSING
    data_dir: str = MISSING
    log_dir: str = MISSING
    output_dir: str = MISSING
    cache_dir: str = MISSING


@dataclass
class TrainConf:
    backbone: BackboneConf = field(default_factory=BackboneConf)
    data: Any = MISSING  # schema chosen by data.name (DATA_SCHEMAS)
    strategy: Any = MISSING  # schema chosen by strategy.name (STRATEGY_SCHEMAS)
    optimizer: OptimizerConf = field(default_factory=OptimizerConf)
    scheduler: SchedulerConf = field(default_factory=SchedulerConf)
    trainer: TrainerConf = field(default_factory=TrainerConf)
    logger: LoggerConf = field(default_factory=LoggerConf)
    callbacks: CallbacksConf = field(default_factory=CallbacksConf)
    paths: PathsConf = field(default_factory=PathsConf)
    task_name: str = "train"
    seed: int = 0
    optimized_metric: str = "val/acc"
    test: bool = True  # test the best checkpoint after fit
    tags: List[str] = field(default_factory=list)
    resume: Optional[str] = None  # null | auto (<run dir>/checkpoints/last.ckpt if present) | a .ckpt path


BACKBONE_KINDS = ("torchvision", "timm", "efficientnet_lite0", "checkpoint")

DATA_SCHEMAS = {
    "fashion_mnist": DataConf,
    "digits": DataConf,
    "image_folder": DataConf,
    "cifar10": DataConf,
    "cifar100": DataConf,
    "flowers102": DataConf,
    "oxford_iiit_pet": DataConf,
    "food101": DataConf,
    "synthetic": SyntheticDataConf,
}

STRATEGY_SCHEMAS = {
    "scratch": StrategyConf,
    "linear_probe": LinearProbeConf,
    "finetune": StrategyConf,
    "progressive": ProgressiveConf,
    "lp_ft": LPFTConf,
    "l2sp": L2SPConf,
    "ewc": EWCConf,
}
STAGED_STRATEGIES = ("progressive", "lp_ft")
PROGRESSIVE_SCHEDULES = ("epochs", "plateau", "phases")
FISHER_SOURCES = ("auto", "source", "target", "uniform")

AUGMENT_PRESETS = ("none", "basic", "strong")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "onecycle", "none")
# Metrics logged by TransferModule that optimized_metric and monitors may name.
METRIC_NAMES = ("val/acc", "val/f1_macro", "val/loss", "test/acc", "test/f1_macro", "test/loss")
