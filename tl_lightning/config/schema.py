"""Structured schemas for the composed config: the one place that holds every key's type and default.

They are registered in Hydra's ConfigStore (bottom of this file): ``TrainConf`` is the base of
conf/train.yaml, so every group merges into its typed node and a misspelled key or a wrong type fails
while Hydra composes, with the key's full path, before anything heavy is imported. The data and
strategy groups have one schema per kind: each option YAML names its schema in its defaults list
("schema in the same config group") and lists only what differs from it.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class BackboneConf:
    kind: str = MISSING  # a backbone registry kind: torchvision | timm | efficientnet_lite0 | hf | minilm | checkpoint
    name: str = MISSING  # architecture name inside that kind
    pretrained: bool = True
    weights: Optional[str] = None  # a state-dict file to load instead of the published weights
    path: Optional[str] = None  # kind=checkpoint: a checkpoint of this harness (<run dir>/checkpoints/best.ckpt)
    head_dropout: float = 0.0
    in_chans: Optional[int] = None  # image channels the model takes (1: grayscale); null: the model's own (3)
    # text backbones (kind=hf|minilm) only:
    max_length: Optional[int] = None  # tokens per text (special tokens included); null: min(128, the model's limit)
    pooling: str = "mean"  # mean (over the attention mask) | cls (the first token's hidden state)
    truncation: str = "head"  # head (keep the start) | head_tail (keep the first quarter and the last three quarters)


@dataclass
class ImbalanceConf:
    """A long-tailed labelled budget: class c gets ``samples_per_class * ratio ** (-rank_c / (C - 1))`` training
    samples (at least 1), rank_c = c (order=fixed) or a permutation by the split seed (order=seed); or ``counts``,
    one budget per class. Val and test stay as they are (balanced by data.eval_per_class)."""

    ratio: Optional[float] = None  # head / tail budget (>= 1); null: no imbalance
    order: str = "fixed"  # fixed (class 0 is the head) | seed (which classes are the tail follows data.seed)
    counts: Optional[List[int]] = None  # an explicit budget per class, instead of ratio


IMBALANCE_ORDERS = ("fixed", "seed")
SAMPLERS = ("random", "balanced", "group_balanced")


@dataclass
class DataConf:
    """What every dataset takes, whatever its modality."""

    name: str = MISSING
    root: Optional[str] = None
    download: bool = False
    seed: int = 0  # split seed; conf/train.yaml links it to the run's seed
    samples_per_class: Optional[int] = None  # labeled budget per class; null = all
    val_fraction: float = 0.1  # of the training pool, stratified
    test_fraction: float = 0.2  # only for datasets without an official test split
    eval_per_class: Optional[int] = None  # cap on val and test samples per class
    classes: Optional[List[Any]] = None  # keep a subset of classes (ids or names)
    imbalance: ImbalanceConf = field(default_factory=ImbalanceConf)
    # random: each training sample once per epoch, shuffled; balanced: every class equally often (drawn with
    # replacement by class weight; each DDP rank takes its own share of one stream seeded by seed and epoch);
    # group_balanced: every group (data.shortcut's slices) equally often
    sampler: str = "random"
    batch_size: int = 64  # per device
    eval_batch_size: Optional[int] = None
    num_workers: int = 0
    pin_memory: bool = False


AUGMENT_PRESETS = ("none", "basic", "strong")


@dataclass
class ShortcutConf:
    """A spurious colour per class (tl_lightning/data/shortcut.py): in train and val it is the sample's class with
    probability train_correlation, in test independent of the class. Groups: (class, aligned|conflicting)."""

    kind: Optional[str] = None  # null (off) | tint (the image multiplied by the colour) | patch (a corner square)
    train_correlation: float = 0.95


SHORTCUT_KINDS = (None, "tint", "patch")


@dataclass
class ImageDataConf(DataConf):
    """Image datasets: the backbone's preprocessing resizes to image_size and augments."""

    image_size: Optional[int] = None  # input resolution; null = the backbone's native size
    augment: str = "basic"  # none | basic | strong
    shortcut: ShortcutConf = field(default_factory=ShortcutConf)


@dataclass
class ImageFolderDataConf(ImageDataConf):
    # a group (slice) per image from a metadata file (tl_lightning/data/groups.py): fairness metrics,
    # group-robust losses, group-balanced sampling
    groups_csv: Optional[str] = None  # a .csv (or .tsv) with one row per image
    group_column: Optional[str] = None  # its column holding the group
    groups_key_column: str = "path"  # its column naming the image: path relative to data.root, or file name


@dataclass
class MultiSourceDataConf(ImageDataConf):
    """Several data options as one source task (tl_lightning/data/multi_source.py); seed, image_size, augment and
    the loader settings here apply to every source."""

    sources: Dict[str, Any] = field(default_factory=dict)  # {<source name>: {name: <data option>, <its overrides>}}
    prefix_classes: bool = False  # class names '<source>:<class>' (needed when two sources share a class name)


@dataclass
class SyntheticDataConf(ImageDataConf):
    num_classes: int = 4
    per_class: int = 60
    native_size: int = 32  # size of the generated images
    channels: int = 3


@dataclass
class TextDataConf(DataConf):
    """Text datasets: the backbone's preprocessing tokenises (no augmentation); training batches are grouped by
    length (bucketing) and padded to their longest text."""

    batch_size: int = 32
    bucketing: bool = True


FORTUNE_TOPICS = ["computers", "science", "politics", "sports", "food", "law", "medicine", "love", "education", "drugs"]


@dataclass
class FortunesDataConf(TextDataConf):
    topics: List[str] = field(default_factory=lambda: list(FORTUNE_TOPICS))  # fortune files, one class each


@dataclass
class TextCsvDataConf(TextDataConf):
    path: Optional[str] = None  # one .csv / .tsv / .jsonl file, split by seed
    train_path: Optional[str] = None  # or separate files (val_path and test_path optional)
    val_path: Optional[str] = None
    test_path: Optional[str] = None
    text_column: str = "text"
    label_column: str = "label"
    group_column: Optional[str] = None  # a slice label per text (fairness metrics, group-robust losses)


@dataclass
class SyntheticTextDataConf(TextDataConf):
    num_classes: int = 4
    per_class: int = 40


@dataclass
class StrategyConf:
    name: str = MISSING
    lr: float = 1e-3  # head learning rate
    backbone_lr_mult: float = 1.0  # backbone lr = lr * backbone_lr_mult
    layer_decay: float = 1.0  # lr of a backbone group = backbone lr * layer_decay ** (its depth from the top)
    # BatchNorm layers of the trained backbone: train (statistics re-estimated on the target, affine trains) |
    # freeze_stats (eval mode: running statistics untouched; affine trains) | freeze (neither)
    bn: str = "train"


@dataclass
class LinearProbeConf(StrategyConf):
    backbone_lr_mult: float = 0.0  # unused: the backbone does not train
    cache_features: bool = True  # with data.augment=none: compute features once, train the head on them


@dataclass
class PhasedConf(StrategyConf):
    """Shared by strategies with phases: plateau detection and warmup of newly unfrozen groups."""

    monitor: str = "${optimized_metric}"  # a phase with patience ends when this stops improving
    mode: str = "max"
    min_delta: float = 0.0
    warmup_steps: int = 0  # linear warmup of each newly unfrozen group, in optimizer steps
    # global: one warmup + cosine decay over the whole run | restart: each phase its own, over its own epochs
    phase_schedule: str = "global"


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
    ft_lr: float = 1e-4  # lr of the backbone in the fine-tuning phase
    ft_head_lr: Optional[float] = None  # lr of the head in the fine-tuning phase (null: ft_lr)


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
class LoraConf(StrategyConf):
    """Low-rank adapters (Hugging Face peft) on the frozen backbone; the new head trains fully."""

    r: int = 8  # rank of each adapter
    alpha: float = 16.0  # scaling: the update is (alpha / r) * B A
    dropout: float = 0.0  # dropout on the adapters' input
    # regexes searched in module names (e.g. ['attn\\.qkv$']); null: the family default (attention projections of
    # transformers, 1x1 and 3x3 convolutions of CNNs)
    target_modules: Optional[List[str]] = None
    bn: str = "freeze_stats"


@dataclass
class IA3Conf(StrategyConf):
    """IA3 (peft): learned output scaling of the target layers (the same defaults as LoRA's targets)."""

    target_modules: Optional[List[str]] = None
    bn: str = "freeze_stats"


@dataclass
class ProtoNetConf(StrategyConf):
    """Prototypical networks: episodic training on source classes, nearest-class-mean head on the target."""

    ways: int = 5  # classes per training episode
    shots: int = 5  # support samples per class in a training episode
    queries: int = 5  # query samples per class in a training episode
    episodes_per_epoch: int = 20  # 20 episodes of 5 x (5 + 5) images: 1,000 images an epoch
    source_classes: Optional[List[Any]] = None  # ids or names; null: the classes data.classes leaves out
    source_per_class: Optional[int] = None  # cap on source samples per class (null: all)
    eval_episodes: int = 600  # few-shot episodes on the test split after testing (0: none)
    eval_ways: Optional[int] = None  # null: every target class
    eval_queries: int = 15
    # backbone lr 3e-5: on the few-shot Fashion-MNIST val, 3e-4 (finetune's) fitted the five source classes' episodes
    # and lost the target (5-shot val 79.9 against 87.0 %, 1-shot 59.4 against 63.2 %, 3 seeds)
    backbone_lr_mult: float = 0.01
    bn: str = "freeze_stats"


@dataclass
class LossConf:
    name: str = MISSING  # a criterion of tl_lightning/losses/criteria.py (the loss option sets it)
    label_smoothing: float = 0.0  # ce, class_balanced, logit_adjusted, balanced_softmax
    # long-tail criteria (conf/loss/<name>.yaml sets what each uses):
    weighting: str = "none"  # class_balanced, focal: none | inverse (1 / n_c) | effective ((1 - beta) / (1 - beta^n_c))
    beta: float = 0.999  # effective number of samples (Cui et al. 2019)
    gamma: float = 2.0  # focal
    tau: float = 1.0  # logit_adjusted: logits + tau * log prior
    eta: float = 0.01  # group_dro: step size of the group weights' exponentiated-gradient update
    group_adjustment: float = 0.0  # group_dro: C in loss_g + C / sqrt(n_g) (Sagawa et al.'s generalisation adjustment)
    # extra terms added to the criterion: {<name>: {kind: <registered term kind>, ...}} (null switches one off)
    terms: Dict[str, Any] = field(default_factory=dict)


OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "onecycle", "none")


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
class FairnessMonitorConf:
    """Watches a slice metric on validation (tl_lightning/callbacks/fairness.py) and acts when it degrades."""

    enabled: bool = False
    monitor: str = "val/worst_group_acc"
    mode: str = "max"  # max: higher is better (an accuracy); min: lower is better (a gap)
    max_gap: Optional[float] = None  # mode=min: degraded while the value is above this
    margin: float = 0.05  # degraded while the value is worse than the best seen by more than this
    patience: int = 2  # consecutive degraded epochs before acting
    action: str = "warn"  # warn | stop (end fit) | rollback (restore the weights of the best epoch by this metric)
    after_rollback: str = "continue"  # continue | stop


FAIRNESS_ACTIONS = ("warn", "stop", "rollback")


@dataclass
class CollapseConf:
    """Warn once when validation predictions collapse onto few classes (tl_lightning/callbacks/diagnostics.py)."""

    enabled: bool = True
    max_tv: float = 0.5  # total variation between the predicted-class and the label histograms


@dataclass
class PlateauConf:
    """Warn once when the monitored metric falls for ``patience`` epochs after its best, or stays flat."""

    enabled: bool = True
    monitor: str = "${optimized_metric}"
    mode: str = "${callbacks.model_checkpoint.mode}"
    patience: int = 3
    min_delta: float = 0.005


@dataclass
class SaliencyConf:
    """Grad-CAM maps of fixed validation images once fit ends (tl_lightning/callbacks/saliency.py)."""

    enabled: bool = False
    per_class: int = 2  # images per class
    max_classes: int = 10  # the first classes only, for data with many


@dataclass
class CallbacksConf:
    model_checkpoint: ModelCheckpointConf = field(default_factory=ModelCheckpointConf)
    early_stopping: EarlyStoppingConf = field(default_factory=EarlyStoppingConf)
    lr_monitor: LrMonitorConf = field(default_factory=LrMonitorConf)
    rich_progress_bar: SwitchConf = field(default_factory=SwitchConf)
    confusion_matrix: SwitchConf = field(default_factory=SwitchConf)
    fairness: FairnessMonitorConf = field(default_factory=FairnessMonitorConf)
    collapse: CollapseConf = field(default_factory=CollapseConf)
    plateau: PlateauConf = field(default_factory=PlateauConf)
    saliency: SaliencyConf = field(default_factory=SaliencyConf)
    # any further Lightning callbacks, each a {_target_: ..., ...} node
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class PathsConf:
    root_dir: str = "${hydra:runtime.cwd}"
    data_dir: str = "${paths.root_dir}/data"  # downloads (data.download=true)
    log_dir: str = "${paths.root_dir}/logs"  # run dirs
    output_dir: str = "${hydra:runtime.output_dir}"
    cache_dir: str = "${paths.root_dir}/.cache"  # cached features


@dataclass
class TrainConf:
    backbone: BackboneConf = field(default_factory=BackboneConf)
    data: Any = MISSING  # typed by the chosen option's schema (conf/data/<name>.yaml names it)
    strategy: Any = MISSING  # likewise (conf/strategy/<name>.yaml)
    loss: LossConf = field(default_factory=LossConf)
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
    # resume=auto into a run dir refuses a config that differs from the one the dir was started with (the keys
    # of tl_lightning.rundir.RESUME_MAY_DIFFER aside); false: continue with the new values, with a warning
    resume_strict: bool = True


@dataclass
class CheckpointTaskConf:
    """What eval, predict and export share: the checkpoint, the device, where things go."""

    ckpt_path: str = MISSING  # a checkpoint of this harness: <run dir>/checkpoints/best.ckpt
    paths: PathsConf = field(default_factory=PathsConf)
    task_name: str = MISSING


@dataclass
class EvalConf(CheckpointTaskConf):
    # null: the data the checkpoint was trained on (its recorded config and split; data.<key>=... overrides a
    # recorded value); data=<option> [data.<key>=...]: any datamodule, whose classes must be the checkpoint's
    data: Any = None
    split: str = "auto"  # auto (recorded data: test; other data: all) | test | val | train | all
    seed: Optional[int] = None  # split seed of data=<option>; null: the checkpoint's
    trainer: TrainerConf = field(default_factory=TrainerConf)
    logger: LoggerConf = field(default_factory=LoggerConf)
    confusion_matrix: bool = True  # <run dir>/confusion_test.png and the loggers
    progress_bar: bool = True
    task_name: str = "eval"


@dataclass
class PredictConf(CheckpointTaskConf):
    input: str = MISSING  # a folder (searched recursively), a file, a glob, or (text models) a .csv/.tsv/.jsonl
    output: str = "predictions.csv"
    text_column: str = "text"  # the column of a CSV/TSV/JSONL input that holds the texts
    top_k: int = 3
    batch_size: int = 64
    num_workers: int = 2
    device: str = "auto"  # auto (the GPU when there is one) | cpu | cuda | cuda:<n>
    progress_bar: bool = True
    task_name: str = "predict"


@dataclass
class ExportConf(CheckpointTaskConf):
    format: str = "onnx"  # onnx | torchscript
    output: Optional[str] = None  # null: <the checkpoint's run dir>/export/<checkpoint name>.<onnx|pt>
    quantize: Optional[str] = None  # null | dynamic (onnx only: 8-bit weights per channel, onnxruntime's dynamic quantiser)
    opset: Optional[int] = None  # null: torch.onnx's default
    # the parity check: real samples of the checkpoint's test split (its recorded data), or random inputs
    # when that data cannot be read here
    verify_samples: int = 32
    verify_batch_sizes: List[int] = field(default_factory=lambda: [1, 8])
    max_abs_diff: float = 1e-4  # fp32: fail above this max |logit difference|
    min_top1_agreement: float = 1.0  # fp32: fail below this share of equal top-1 predictions
    task_name: str = "export"


@dataclass
class ReferenceConf:
    """What ``diagnose gap`` compares the target with."""

    kind: str = "data"  # data (reference.data=<a data option>) | source (backbone=checkpoint's source data) | halves
    data: Optional[str] = None  # kind=data: a data option (conf/data/<name>.yaml), with its defaults
    split: str = "test"  # the reference's split


@dataclass
class DiagnoseConf:
    """``python -m tl_lightning.diagnose rank|gap`` (conf/diagnose.yaml; tl_lightning/diagnose/run.py)."""

    command: str = "rank"  # rank (transferability of candidate backbones) | gap (domain gap to a reference)
    backbone: BackboneConf = field(default_factory=BackboneConf)
    data: Any = MISSING
    # rank: the candidates: a backbone option (efficientnet_lite0), kind:name (timm:convnext_tiny), random:<either>
    # (random weights), or a harness checkpoint (.ckpt); empty: the backbone group's choice. A random-weights
    # control of the first candidate is always added.
    backbones: List[str] = field(default_factory=list)
    split: str = "train"  # the target split scored (rank) or compared (gap)
    reference: ReferenceConf = field(default_factory=ReferenceConf)
    max_samples: int = 1000  # gap: at most this many samples a side (a seeded subset)
    permutations: int = 500  # gap: the MMD permutation test's relabellings
    seed: int = 0
    batch_size: int = 100  # feature extraction
    paths: PathsConf = field(default_factory=PathsConf)
    task_name: str = "diagnose"


DIAGNOSE_COMMANDS = ("rank", "gap")
REFERENCE_KINDS = ("data", "source", "halves")
FEATURE_SPLITS = ("train", "val", "test")
EXPORT_FORMATS = ("onnx", "torchscript")
EVAL_SPLITS = ("auto", "test", "val", "train", "all")
BN_POLICIES = ("train", "freeze_stats", "freeze")
PHASE_SCHEDULES = ("global", "restart")
PROGRESSIVE_SCHEDULES = ("epochs", "plateau", "phases")
FISHER_SOURCES = ("auto", "source", "target", "uniform")


def store_schemas() -> None:
    """Register the schemas in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConf)
    for name, node in (("eval_schema", EvalConf), ("predict_schema", PredictConf), ("export_schema", ExportConf),
                       ("diagnose_schema", DiagnoseConf)):
        cs.store(name=name, node=node)
    for name, node in (("schema_image", ImageDataConf), ("schema_image_folder", ImageFolderDataConf),
                       ("schema_multi_source", MultiSourceDataConf),
                       ("schema_synthetic", SyntheticDataConf),
                       ("schema_text", TextDataConf), ("schema_fortunes", FortunesDataConf),
                       ("schema_text_csv", TextCsvDataConf), ("schema_synthetic_text", SyntheticTextDataConf)):
        cs.store(group="data", name=name, node=node)
    for name, node in (("schema", StrategyConf), ("schema_linear_probe", LinearProbeConf),
                       ("schema_progressive", ProgressiveConf), ("schema_lp_ft", LPFTConf),
                       ("schema_l2sp", L2SPConf), ("schema_ewc", EWCConf),
                       ("schema_lora", LoraConf), ("schema_ia3", IA3Conf),
                       ("schema_protonet", ProtoNetConf)):
        cs.store(group="strategy", name=name, node=node)


store_schemas()
