"""Structured schemas for the composed config: the one place that holds every key's type and default.

They are registered in Hydra's ConfigStore (bottom of this file): ``TrainConf`` is the base of
conf/train.yaml, so every group merges into its typed node and a misspelled key or a wrong type fails
while Hydra composes, with the key's full path, before anything heavy is imported. The data and
strategy groups have one schema per kind: each option YAML names its schema in its defaults list
("schema in the same config group") and lists only what differs from it.

Each schema checks its own values in a ``check(cls, node, root)`` classmethod (``root``: the whole config, or
None where a node is checked alone); ``tl_lightning.config.checks.run_checks`` calls them along the MRO, base
class first, before torch is imported. A schema of a config group option is stored in Hydra's ConfigStore by
the ``@in_config_store(group, name)`` decorator above it.
"""

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, ListConfig, OmegaConf

from tl_lightning.config import CONFIG_DIR
from tl_lightning.config.checks import check_choice, check_in, check_positive
from tl_lightning.errors import ConfigError, check_file
from tl_lightning.registry import BACKBONES


def in_config_store(group: str, name: str):
    """Store the decorated dataclass in Hydra's ConfigStore as ``<group>/<name>`` (what option YAMLs name)."""
    def store(node):
        ConfigStore.instance().store(group=group, name=name, node=node)
        return node
    return store


@dataclass
class BackboneConf:
    kind: str = MISSING  # a backbone registry kind: torchvision | timm | efficientnet_lite0 | hf | minilm | checkpoint
    name: str = MISSING  # architecture name inside that kind
    pretrained: bool = True  # start from the published weights (false: random initialisation)
    weights: Optional[str] = None  # a state-dict file to load instead of the published weights
    path: Optional[str] = None  # kind=checkpoint: a checkpoint of this harness (<run dir>/checkpoints/best.ckpt)
    head_dropout: float = 0.0  # dropout before the new classification head
    drop_path_rate: float = 0.0  # stochastic depth of timm backbones (kind timm, efficientnet_lite0): 0 = off
    in_chans: Optional[int] = None  # image channels the model takes (1: grayscale); null: the model's own (3)
    # activation checkpointing (timm's set_grad_checkpointing, transformers' activation_checkpointing_enable): less
    # activation memory for about one more forward pass per training step
    grad_checkpointing: bool = False
    # text backbones (kind=hf|minilm) only:
    max_length: Optional[int] = None  # tokens per text (special tokens included); null: min(128, the model's limit)
    pooling: str = "mean"  # mean (over the attention mask) | cls (the first token's hidden state)
    truncation: str = "head"  # head (keep the start) | head_tail (keep the first quarter and the last three quarters)

    @classmethod
    def check(cls, bb, root=None) -> None:

        check_choice(bb.kind, BACKBONES.names(), "backbone.kind")
        check_choice(bb.pooling, ("mean", "cls"), "backbone.pooling")
        check_choice(bb.truncation, ("head", "head_tail"), "backbone.truncation")
        if bb.max_length is not None and bb.max_length < 8:
            raise ConfigError(f"config key 'backbone.max_length': must be >= 8 tokens, got {bb.max_length}")
        check_in(bb.head_dropout, 0.0, 1.0, "backbone.head_dropout")
        check_in(bb.drop_path_rate, 0.0, 1.0, "backbone.drop_path_rate")
        if bb.drop_path_rate and bb.kind not in DROP_PATH_KINDS:
            raise ConfigError(f"backbone.drop_path_rate={bb.drop_path_rate}: stochastic depth comes with timm backbones "
                              f"(kind {', '.join(DROP_PATH_KINDS)}), not backbone.kind={bb.kind}")
        if bb.grad_checkpointing and bb.kind not in GRAD_CHECKPOINTING_KINDS:
            raise ConfigError(f"backbone.grad_checkpointing=true: activation checkpointing comes with timm and Hugging "
                              f"Face backbones (kind {', '.join(GRAD_CHECKPOINTING_KINDS)}), not backbone.kind={bb.kind}")
        if bb.kind == "checkpoint":
            if not bb.path:
                raise ConfigError("backbone=checkpoint needs backbone.path=<run dir>/checkpoints/best.ckpt")
            check_file(bb.path, "backbone.path", checkpoint=True)
        if bb.get("weights"):
            check_file(bb.weights, "backbone.weights")


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
GROUP_SOURCES = ("data.shortcut.kind=tint|patch (any image data), data.groups_csv=<file> data.group_column=<column> "
                 "(data=image_folder), data.group_column=<column> (data=text_csv), data=multi_source (its sources)")


@dataclass
class DataConf:
    """What every dataset takes, whatever its modality."""

    name: str = MISSING
    root: Optional[str] = None
    download: bool = False
    seed: int = 0  # split seed; conf/train.yaml links it to the run's seed
    samples_per_class: Optional[int] = None  # labeled budget per class; null = all
    val_fraction: float = 0.1  # of the training pool, stratified
    # k-fold cross-validation: the pool (what is left after the test split) in `folds` stratified, seeded folds;
    # fold `fold` is the validation set and the labelled budget is drawn from the others; the test set is unchanged
    folds: Optional[int] = None
    fold: int = 0
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
    # a second source whose labels are never read (tl_lightning/data/unlabeled.py): {name: <data option>, <its
    # overrides>}, trained on jointly: the unlabelled target of domain adaptation, or more data of the labelled target
    unlabeled: Optional[Any] = None
    unlabeled_ratio: int = 1  # unlabelled samples per labelled one in a training batch (0: only evaluated on)
    unlabeled_strong: bool = False  # also a strongly augmented view of each unlabelled image (FixMatch)

    # where data.root names no folder: the hint after the one line (download needs internet)
    root_hint: ClassVar[str] = "; data.download=true creates it and downloads the data (needs internet)"
    root_required: ClassVar[str] = ""  # the line when data.root is unset and this data needs one

    @classmethod
    def has_groups(cls, data) -> bool:
        """The data gives each sample a group (slice) label."""
        return False

    @classmethod
    def modality(cls, data) -> str:
        """What its samples are (image | text): the backbone must take the same, and data.unlabeled too."""
        return "image"

    @classmethod
    def check(cls, data, root=None) -> None:
        check_positive(data.samples_per_class, "data.samples_per_class")
        check_positive(data.eval_per_class, "data.eval_per_class")
        check_positive(data.batch_size, "data.batch_size", allow_none=False)
        if data.num_workers < 0:
            raise ConfigError(f"config key 'data.num_workers': must be >= 0 (0: load in the main process), "
                              f"got {data.num_workers}")
        if data.folds is not None and data.folds < 2:
            raise ConfigError(f"config key 'data.folds': at least 2 folds (or null: one val split), got {data.folds}")
        if data.folds is None and data.fold != 0:
            raise ConfigError(f"data.fold={data.fold} picks one of data.folds: set data.folds=<K>, e.g. data.folds=5")
        if data.folds is not None and not 0 <= data.fold < data.folds:
            raise ConfigError(f"config key 'data.fold': 0 .. {data.folds - 1} for data.folds={data.folds}, got {data.fold}")
        for key in ("val_fraction", "test_fraction"):
            if not 0.0 < data[key] < 1.0:
                raise ConfigError(f"config key 'data.{key}': must be between 0 and 1, got {data[key]}")
        check_choice(data.sampler, SAMPLERS, "data.sampler")
        if data.unlabeled_ratio < 0:
            raise ConfigError(f"config key 'data.unlabeled_ratio': unlabelled samples per labelled one, >= 0 (0: the "
                              f"unlabelled data is only evaluated on), got {data.unlabeled_ratio}")
        if data.unlabeled_strong and not data.unlabeled:
            raise ConfigError("data.unlabeled_strong=true is a view of the unlabelled data: set data.unlabeled="
                              "{name: <data option>, ...}")
        imbalance = data.imbalance
        check_choice(imbalance.order, IMBALANCE_ORDERS, "data.imbalance.order")
        if imbalance.ratio is not None and imbalance.ratio < 1:
            raise ConfigError(f"config key 'data.imbalance.ratio': the head class's budget over the tail's, >= 1 (1: "
                              f"balanced), got {imbalance.ratio}")
        if imbalance.ratio is not None and imbalance.counts is not None:
            raise ConfigError("data.imbalance: give ratio (an exponential profile) or counts (one per class), not both")
        if imbalance.counts is not None and (not imbalance.counts or min(imbalance.counts) < 1):
            raise ConfigError(f"config key 'data.imbalance.counts': one budget >= 1 per class, got "
                              f"{list(imbalance.counts)}")
        if imbalance.ratio is not None and data.samples_per_class is None:
            raise ConfigError(f"data.imbalance.ratio needs data.samples_per_class (the head class's budget), e.g. "
                              f"data.samples_per_class=100 data.imbalance.ratio={imbalance.ratio:g}")
        if data.sampler == "group_balanced" and not cls.has_groups(data):
            raise ConfigError(f"data.sampler=group_balanced needs groups in the data: {GROUP_SOURCES} "
                              "(data.sampler=balanced balances classes)")
        folder = data.get("root")
        if not folder and cls.root_required:
            raise ConfigError(cls.root_required)
        if folder and not data.get("download", False) and not os.path.isdir(folder):
            what = "is a file, not a directory" if os.path.exists(folder) else "no such directory"
            raise ConfigError(f"data.root: {folder}: {what} (data={data.name}){cls.root_hint}")


AUGMENT_PRESETS = ("none", "basic", "strong", "randaugment", "autoaugment")
CACHE_MODES = ("auto", "off", "memory", "disk")  # data.cache (tl_lightning/data/decoded_cache.py)
DROP_PATH_KINDS = ("timm", "efficientnet_lite0")
GRAD_CHECKPOINTING_KINDS = ("timm", "efficientnet_lite0", "hf", "minilm")


@dataclass
class ShortcutConf:
    """A spurious colour per class (tl_lightning/data/shortcut.py): in train and val it is the sample's class with
    probability train_correlation, in test independent of the class. Groups: (class, aligned|conflicting)."""

    kind: Optional[str] = None  # null (off) | tint (the image multiplied by the colour) | patch (a corner square)
    train_correlation: float = 0.95


SHORTCUT_KINDS = (None, "tint", "patch")


@in_config_store("data", "schema_image")
@dataclass
class ImageDataConf(DataConf):
    """Image datasets: the backbone's preprocessing resizes to image_size and augments."""

    image_size: Optional[int] = None  # input resolution; null = the backbone's native size
    # none | basic (crop, flip) | strong (wide crops, TrivialAugment, erasing) | randaugment | autoaugment (basic + the
    # policy); unset: what the strategy trains with (strategy.augment; linear_probe: none, so features are cached)
    augment: str = "${oc.select:strategy.augment,basic}"
    shortcut: ShortcutConf = field(default_factory=ShortcutConf)
    # decode and resize each image once, keep it as uint8 (tl_lightning/data/decoded_cache.py): auto | off | memory |
    # disk (memory-mapped under paths.cache_dir/decoded). auto: disk for image files when it fits cache_max_gb
    cache: str = "auto"
    cache_max_gb: float = 8.0  # data.cache=auto caches only when the decoded splits fit in this

    @classmethod
    def has_groups(cls, data) -> bool:
        return data.shortcut.kind is not None

    @classmethod
    def check(cls, data, root=None) -> None:
        if root is not None and data.augment == root.strategy.get("augment") and data.augment not in AUGMENT_PRESETS:
            check_choice(data.augment, AUGMENT_PRESETS, "strategy.augment")  # data.augment follows it
        check_choice(data.augment, AUGMENT_PRESETS, "data.augment")
        check_positive(data.image_size, "data.image_size")
        check_choice(data.cache, CACHE_MODES, "data.cache")
        check_positive(data.cache_max_gb, "data.cache_max_gb", allow_none=False)
        check_choice(data.shortcut.kind, SHORTCUT_KINDS, "data.shortcut.kind")
        if not 0.0 <= data.shortcut.train_correlation <= 1.0:
            raise ConfigError(f"config key 'data.shortcut.train_correlation': a probability in [0, 1], got "
                              f"{data.shortcut.train_correlation}")


@in_config_store("data", "schema_image_folder")
@dataclass
class ImageFolderDataConf(ImageDataConf):
    # a group (slice) per image from a metadata file (tl_lightning/data/groups.py): fairness metrics,
    # group-robust losses, group-balanced sampling
    groups_csv: Optional[str] = None  # a .csv (or .tsv) with one row per image
    group_column: Optional[str] = None  # its column holding the group
    groups_key_column: str = "path"  # its column naming the image: path relative to data.root, or file name

    root_hint: ClassVar[str] = ""
    root_required: ClassVar[str] = "data=image_folder needs data.root=<folder of class subfolders, or of train/ val/ test/>"

    @classmethod
    def has_groups(cls, data) -> bool:
        return data.shortcut.kind is not None or bool(data.group_column)

    @classmethod
    def check(cls, data, root=None) -> None:
        if data.groups_csv and not data.group_column:
            raise ConfigError(f"data.groups_csv={data.groups_csv} needs data.group_column=<its column holding the group>")
        if data.group_column and not data.groups_csv:
            raise ConfigError(f"data.group_column={data.group_column} is a column of data.groups_csv: give "
                              "data.groups_csv=<file with one row per image>")
        if data.groups_csv:
            check_file(data.groups_csv, "data.groups_csv")
            if data.shortcut.kind is not None:
                raise ConfigError("data.groups_csv and data.shortcut both define the groups; use one of them")


@in_config_store("data", "schema_multi_source")
@dataclass
class MultiSourceDataConf(ImageDataConf):
    """Several data options as one source task (tl_lightning/data/multi_source.py); seed, image_size, augment and
    the loader settings here apply to every source."""

    sources: Dict[str, Any] = field(default_factory=dict)  # {<source name>: {name: <data option>, <its overrides>}}
    prefix_classes: bool = False  # class names '<source>:<class>' (needed when two sources share a class name)

    @classmethod
    def has_groups(cls, data) -> bool:
        return True  # each source is a group


@in_config_store("data", "schema_fashion_mnist_m")
@dataclass
class FashionMNISTMDataConf(ImageDataConf):
    """Fashion-MNIST blended with photo patches (tl_lightning/data/fashion_mnist_m.py)."""

    blend_seed: int = 0  # which patch each image gets: the dataset itself, not the run's split


@in_config_store("data", "schema_synthetic")
@dataclass
class SyntheticDataConf(ImageDataConf):
    num_classes: int = 4
    per_class: int = 60
    native_size: int = 32  # size of the generated images
    channels: int = 3


@in_config_store("data", "schema_text")
@dataclass
class TextDataConf(DataConf):
    """Text datasets: the backbone's preprocessing tokenises (no augmentation); training batches are grouped by
    length (bucketing) and padded to their longest text."""

    batch_size: int = 32
    bucketing: bool = True

    @classmethod
    def modality(cls, data) -> str:
        return "text"

    @classmethod
    def check(cls, data, root=None) -> None:
        check_text_data(data)


def check_text_data(data) -> None:
    if data.unlabeled_strong:
        raise ConfigError("data.unlabeled_strong: a strong augmentation of each unlabelled sample (FixMatch) "
                          "exists for images only, and text has none; use adapt=pseudo_label for text")


@in_config_store("data", "schema_text_folder")
@dataclass
class TextFolderDataConf(TextDataConf):
    """data.root=<folder>/<class>/<file>.txt, one sample per file."""

    root_hint: ClassVar[str] = ""
    root_required: ClassVar[str] = "data=text_folder needs data.root=<folder>/<class>/<file>.txt"


FORTUNE_TOPICS = ["computers", "science", "politics", "sports", "food", "law", "medicine", "love", "education", "drugs"]


@in_config_store("data", "schema_fortunes")
@dataclass
class FortunesDataConf(TextDataConf):
    topics: List[str] = field(default_factory=lambda: list(FORTUNE_TOPICS))  # fortune files, one class each

    root_hint: ClassVar[str] = "; install Debian's fortunes package (apt-get install fortunes; make data does it)"


@in_config_store("data", "schema_text_csv")
@dataclass
class TextCsvDataConf(TextDataConf):
    path: Optional[str] = None  # one .csv / .tsv / .jsonl file, split by seed
    train_path: Optional[str] = None  # or separate files (val_path and test_path optional)
    val_path: Optional[str] = None
    test_path: Optional[str] = None
    text_column: str = "text"
    label_column: str = "label"
    group_column: Optional[str] = None  # a slice label per text (fairness metrics, group-robust losses)

    @classmethod
    def has_groups(cls, data) -> bool:
        return bool(data.group_column)

    @classmethod
    def check(cls, data, root=None) -> None:
        if not data.path and not data.train_path:
            raise ConfigError("data=text_csv needs data.path=<file.csv|.tsv|.jsonl> (split by seed) or "
                              "data.train_path=... [data.val_path=...] [data.test_path=...]")
        if data.path and data.train_path:
            raise ConfigError("data=text_csv: give data.path (one file, split by seed) or data.train_path, not both")
        for key in ("path", "train_path", "val_path", "test_path"):
            if data[key]:
                check_file(data[key], f"data.{key}")


HF_LOCAL_FILES = (".parquet", ".csv", ".tsv", ".json", ".jsonl", ".arrow")


@in_config_store("data", "schema_hf")
@dataclass
class HFDataConf(ImageDataConf):
    """A Hugging Face ``datasets`` dataset (tl_lightning/data/hf_datasets.py): a Hub id, a folder written by
    ``save_to_disk``, a data folder (Parquet/CSV/JSON files, or an imagefolder), or one data file. Images when
    data.text_column is unset (in data.image_column), texts otherwise; the same splits, budget and groups as every
    other dataset."""

    path: Optional[str] = None  # Hub id (e.g. beans, user/name), a local folder, or a .parquet/.csv/.tsv/.json/.jsonl/.arrow file
    config: Optional[str] = None  # the dataset's configuration (load_dataset's name), for Hub datasets that have several
    revision: Optional[str] = None  # a Hub branch, tag or commit (null: main)
    image_column: Optional[str] = None  # the column of images (a datasets.Image feature); null: 'image'
    text_column: Optional[str] = None  # set it for a text dataset: the column of texts
    label_column: str = "label"  # a ClassLabel gives the class names; other values become classes in sorted order
    group_column: Optional[str] = None  # a slice label per sample (fairness metrics, group-robust losses)
    cache_dir: Optional[str] = None  # where datasets keeps its Arrow files; null: its own ($HF_DATASETS_CACHE)
    bucketing: bool = True  # text: training batches of similar lengths

    @classmethod
    def modality(cls, data) -> str:
        return "text" if data.text_column else "image"

    @classmethod
    def has_groups(cls, data) -> bool:
        return data.shortcut.kind is not None or bool(data.group_column)

    @classmethod
    def check(cls, data, root=None) -> None:
        if not data.path:
            raise ConfigError("data=hf needs data.path=<Hugging Face dataset id, a folder saved by save_to_disk or of "
                              f"data files, or one {'/'.join(HF_LOCAL_FILES)} file>")
        if data.root:
            raise ConfigError(f"data=hf reads data.path, not data.root (got data.root={data.root}); give "
                              f"data.path={data.root}")
        local = os.path.exists(data.path) or data.path.startswith((".", "/", "~")) or data.path.endswith(HF_LOCAL_FILES)
        if local and not os.path.exists(data.path):
            raise ConfigError(f"data.path: no such file or folder: {data.path} (data=hf: a Hub id has the form "
                              "<name> or <user>/<name>)")
        if os.path.isfile(data.path) and not data.path.endswith(HF_LOCAL_FILES):
            raise ConfigError(f"data.path: {data.path}: data=hf reads {', '.join(HF_LOCAL_FILES)} files, or a folder")
        if data.text_column:
            if data.image_column:
                raise ConfigError(f"data=hf: data.text_column={data.text_column} and data.image_column="
                                  f"{data.image_column} both set; one dataset is images or texts: unset one")
            if data.shortcut.kind is not None:
                raise ConfigError("data.shortcut colours images; data.text_column makes this a text dataset")
            check_text_data(data)
        for key in ("text_column", "image_column", "label_column", "group_column"):
            if data[key] is not None and not str(data[key]).strip():
                raise ConfigError(f"config key 'data.{key}': an empty column name")
        if data.group_column and data.group_column == data.label_column:
            raise ConfigError(f"data.group_column={data.group_column} is the label column; groups are another column")
        if data.group_column and data.shortcut.kind is not None:
            raise ConfigError("data.group_column and data.shortcut both define the groups; use one of them")


@in_config_store("data", "schema_synthetic_text")
@dataclass
class SyntheticTextDataConf(TextDataConf):
    num_classes: int = 4
    per_class: int = 40


@in_config_store("strategy", "schema")
@dataclass
class StrategyConf:
    name: str = MISSING
    lr: float = 1e-3  # head learning rate
    backbone_lr_mult: float = 1.0  # backbone lr = lr * backbone_lr_mult
    layer_decay: float = 1.0  # lr of a backbone group = backbone lr * layer_decay ** (its depth from the top)
    # BatchNorm layers of the trained backbone: train (statistics re-estimated on the target, affine trains) |
    # freeze_stats (eval mode: running statistics untouched; affine trains) | freeze (neither)
    bn: str = "train"
    # the training augmentation of image data when data.augment is not given (data.augment follows it): each strategy
    # states what it trains best with (linear_probe: none, so its features are cached)
    augment: str = "basic"

    @classmethod
    def check(cls, st, root=None) -> None:
        check_choice(st.augment, AUGMENT_PRESETS, "strategy.augment")
        check_positive(st.lr, "strategy.lr", allow_none=False)
        if st.backbone_lr_mult < 0:
            raise ConfigError(f"config key 'strategy.backbone_lr_mult': must be >= 0 (0: the backbone does not move), "
                              f"got {st.backbone_lr_mult}")
        check_in(st.layer_decay, 0.0, 1.0, "strategy.layer_decay", low_open=True, high_open=False)
        check_choice(st.bn, BN_POLICIES, "strategy.bn")


@in_config_store("strategy", "schema_scratch")
@dataclass
class ScratchConf(StrategyConf):
    """The same architecture from random weights, everything trained."""

    @classmethod
    def check(cls, st, root=None) -> None:
        if st.bn != "train":
            raise ConfigError(f"strategy=scratch learns BatchNorm statistics from random weights; strategy.bn={st.bn} "
                              "would keep their initial values (use strategy.bn=train)")
        if root is not None and root.backbone.kind == "checkpoint":
            raise ConfigError("strategy=scratch starts from random weights; it cannot start from backbone=checkpoint")
        if root is not None and root.backbone.weights is not None:
            raise ConfigError(f"strategy=scratch starts from random weights; drop backbone.weights={root.backbone.weights}")


PROBE_FITS = ("lbfgs", "sgd")
PROBE_GRID = [round(10.0 ** (k / 2), 6) for k in range(-8, 9)]  # C from 10^-4 to 10^4 in half decades


@dataclass
class ProbeFitConf:
    """How a linear probe is fitted (linear_probe, and LP-FT's probe phase): tl_lightning/strategies/lbfgs_probe.py."""

    # lbfgs: an L2-regularised logistic regression to convergence on the frozen features, C chosen on validation |
    # sgd: the head trains with the run's optimizer, batch by batch
    probe: str = "lbfgs"
    # C values (scikit-learn's: C x the summed loss + ||W||^2 / 2), 10^-4 .. 10^4 in half decades
    probe_grid: List[float] = field(default_factory=lambda: list(PROBE_GRID))
    probe_max_iter: int = 1000  # L-BFGS iterations per C at most

    @classmethod
    def check(cls, st, root=None) -> None:
        check_choice(st.probe, PROBE_FITS, "strategy.probe")
        if not st.probe_grid or any(not isinstance(c, (int, float)) or c <= 0 for c in st.probe_grid):
            raise ConfigError(f"config key 'strategy.probe_grid': a non-empty list of positive C values (e.g. "
                              f"[0.1,1,10]), got {list(st.probe_grid)}")
        check_positive(st.probe_max_iter, "strategy.probe_max_iter", allow_none=False)
        if st.probe == "lbfgs" and root is not None and root.loss.name == "group_dro":
            raise ConfigError("strategy.probe=lbfgs fits the head to the whole training split at once; loss=group_dro "
                              "reweights groups batch by batch: use strategy.probe=sgd")


@in_config_store("strategy", "schema_linear_probe")
@dataclass
class LinearProbeConf(StrategyConf, ProbeFitConf):
    backbone_lr_mult: float = 0.0  # unused: the backbone does not train
    augment: str = "none"  # deterministic training samples: the features are computed once and cached
    cache_features: bool = True  # with data.augment=none: compute features once, fit the head on them

    @classmethod
    def check(cls, st, root=None) -> None:
        if st.probe != "lbfgs" or root is None:
            return
        why = None
        if not st.cache_features:
            why = "strategy.cache_features=false"
        elif root.data.get("augment", "none") != "none":
            why = f"data.augment={root.data.augment} changes the training samples every epoch"
        elif root.data.get("sampler", "random") != "random":
            why = (f"data.sampler={root.data.sampler} reweights batches, which a full-batch fit does not see (a "
                   "long-tail loss such as loss=class_balanced weighs the classes in the fit)")
        elif root.loss.terms:
            why = f"loss terms ({', '.join(root.loss.terms)}) are computed batch by batch"
        if why:
            raise ConfigError(f"strategy.probe=lbfgs fits the head once on cached features, but {why}: use "
                              "strategy.probe=sgd (or drop that setting)")


@dataclass
class PhasedConf(StrategyConf):
    """Shared by strategies with phases: plateau detection and warmup of newly unfrozen groups."""

    monitor: str = "${optimized_metric}"  # a phase with patience ends when this stops improving
    mode: str = "max"
    min_delta: float = 0.0
    warmup_steps: int = 0  # linear warmup of each newly unfrozen group, in optimizer steps
    # global: one warmup + cosine decay over the whole run | restart: each phase its own, over its own epochs
    phase_schedule: str = "global"

    @classmethod
    def check(cls, st, root=None) -> None:
        check_choice(st.mode, ("min", "max"), "strategy.mode")
        check_choice(st.phase_schedule, PHASE_SCHEDULES, "strategy.phase_schedule")
        scheduler = root.scheduler.name if root is not None else None
        if st.phase_schedule == "restart" and scheduler not in (None, "cosine"):
            raise ConfigError(f"strategy.phase_schedule=restart restarts the cosine schedule every phase; it needs "
                              f"scheduler.name=cosine, not {scheduler}")
        if scheduler == "onecycle":
            raise ConfigError(f"strategy={st.name} changes learning rates per phase; use scheduler.name=cosine or none, "
                              "not onecycle")


@in_config_store("strategy", "schema_progressive")
@dataclass
class ProgressiveConf(PhasedConf):
    layer_decay: float = 0.385  # ULMFiT's 1/2.6 per group, from the top down
    schedule: str = "epochs"  # epochs | plateau | phases
    unfreeze_every: int = 1  # schedule=epochs: epochs per phase
    groups_per_phase: int = 1  # epochs/plateau: layer groups unfrozen per phase, top first
    patience: int = 2  # schedule=plateau: epochs without improvement that end a phase
    phases: Optional[List[Any]] = None  # schedule=phases: [{groups: [...], lr, head_lr, max_epochs, patience}]
    train_bn: bool = False  # BatchNorm affine parameters train in frozen groups too (statistics stay frozen)

    PHASE_KEYS: ClassVar[tuple] = ("groups", "lr", "head_lr", "max_epochs", "patience")

    @classmethod
    def check(cls, st, root=None) -> None:
        from omegaconf import DictConfig, OmegaConf

        if st.train_bn and st.bn == "freeze":
            raise ConfigError("strategy.train_bn=true trains BatchNorm affine parameters, strategy.bn=freeze forbids it; "
                              "choose one")
        check_choice(st.schedule, PROGRESSIVE_SCHEDULES, "strategy.schedule")
        check_positive(st.unfreeze_every, "strategy.unfreeze_every", allow_none=False)
        check_positive(st.groups_per_phase, "strategy.groups_per_phase", allow_none=False)
        if st.schedule == "phases" and not st.phases:
            raise ConfigError("strategy.schedule=phases needs strategy.phases: a list of "
                              "{groups: [layer groups or parameter regexes], lr, head_lr, max_epochs, patience}")
        for i, phase in enumerate(st.phases or []):
            if not isinstance(phase, DictConfig) or not set(phase.keys()) <= set(cls.PHASE_KEYS):
                got = OmegaConf.to_container(phase) if isinstance(phase, DictConfig) else phase
                raise ConfigError(f"config key 'strategy.phases[{i}]': expected a mapping with keys groups, lr, head_lr, "
                                  f"max_epochs, patience; got {got}")


@in_config_store("strategy", "schema_lp_ft")
@dataclass
class LPFTConf(PhasedConf, ProbeFitConf):
    # strategy.probe=sgd only (lbfgs fits the probe before the first step and every epoch fine-tunes):
    lp_epochs: Optional[int] = 3  # linear-probe epochs (null: until the metric plateaus)
    lp_patience: Optional[int] = None  # end the probe phase after this many epochs without improvement
    ft_lr: float = 1e-4  # lr of the backbone in the fine-tuning phase
    ft_head_lr: Optional[float] = None  # lr of the head in the fine-tuning phase (null: ft_lr)

    @classmethod
    def check(cls, st, root=None) -> None:
        if st.lp_epochs is None and st.lp_patience is None:
            raise ConfigError("strategy=lp_ft needs strategy.lp_epochs or strategy.lp_patience to end the probe phase")
        check_positive(st.ft_lr, "strategy.ft_lr", allow_none=False)
        check_positive(st.ft_head_lr, "strategy.ft_head_lr")


@in_config_store("strategy", "schema_l2sp")
@dataclass
class L2SPConf(StrategyConf):
    alpha: float = 1.0  # pull of the backbone towards its starting weights
    beta: float = 0.01  # L2 on the new head's weights


@in_config_store("strategy", "schema_ewc")
@dataclass
class EWCConf(StrategyConf):
    lam: float = 1.0  # lambda; with normalize=true on the same scale as l2sp's alpha
    fisher_source: str = "auto"  # auto | source | target | uniform
    fisher_samples: int = 200
    fisher_batch_size: int = 1  # 1: per-sample squared gradients; larger: faster, approximate
    normalize: bool = True  # rescale the Fisher to mean 1
    gamma: float = 1.0  # online EWC: F <- gamma * F_old + F_new when the source run used EWC

    @classmethod
    def check(cls, st, root=None) -> None:
        check_choice(st.fisher_source, FISHER_SOURCES, "strategy.fisher_source")
        if st.fisher_source == "source" and root is not None and root.backbone.kind != "checkpoint":
            raise ConfigError("strategy.fisher_source=source needs backbone=checkpoint with a checkpoint made by this "
                              "harness (it records the source data config); use auto, target or uniform")
        check_positive(st.fisher_samples, "strategy.fisher_samples", allow_none=False)
        check_positive(st.fisher_batch_size, "strategy.fisher_batch_size", allow_none=False)


@dataclass
class AdapterConf(StrategyConf):
    """What the adapter strategies (peft) share: target layers, and checkpoints that need the base weights."""

    # regexes searched in module names (e.g. ['attn\\.qkv$']); null: the family default (attention projections of
    # transformers, 1x1 and 3x3 convolutions of CNNs)
    target_modules: Optional[List[str]] = None
    bn: str = "freeze_stats"

    @classmethod
    def check(cls, st, root=None) -> None:
        if root is not None and not root.backbone.pretrained:
            raise ConfigError(f"strategy={st.name} adapts pretrained weights and saves only the adapters, which need the "
                              "base weights again to load; backbone.pretrained=false has no base to reload (use finetune)")
        if st.layer_decay != 1.0:
            raise ConfigError(f"strategy={st.name} trains adapters in one optimizer group (lr * backbone_lr_mult); "
                              f"strategy.layer_decay={st.layer_decay} has nothing to act on (leave it at 1.0)")


@in_config_store("strategy", "schema_lora")
@dataclass
class LoraConf(AdapterConf):
    """Low-rank adapters (Hugging Face peft) on the frozen backbone; the new head trains fully."""

    r: int = 8  # rank of each adapter
    alpha: float = 16.0  # scaling: the update is (alpha / r) * B A
    dropout: float = 0.0  # dropout on the adapters' input

    @classmethod
    def check(cls, st, root=None) -> None:
        if st.r <= 0:
            raise ConfigError(f"config key 'strategy.r': the adapters' rank must be a positive integer (e.g. 4, 8, 16), "
                              f"got {st.r}")
        check_positive(st.alpha, "strategy.alpha", allow_none=False)
        check_in(st.dropout, 0.0, 1.0, "strategy.dropout")


@in_config_store("strategy", "schema_ia3")
@dataclass
class IA3Conf(AdapterConf):
    """IA3 (peft): learned output scaling of the target layers (the same defaults as LoRA's targets)."""


@in_config_store("strategy", "schema_protonet")
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

    @classmethod
    def check(cls, st, root=None) -> None:
        for key in ("ways", "shots", "queries", "episodes_per_epoch", "eval_queries"):
            check_positive(st[key], f"strategy.{key}", allow_none=False)
        check_positive(st.eval_ways, "strategy.eval_ways")
        check_positive(st.source_per_class, "strategy.source_per_class")
        if st.eval_episodes < 0:
            raise ConfigError(f"config key 'strategy.eval_episodes': episodes after testing, >= 0 (0: none), got "
                              f"{st.eval_episodes}")
        if st.ways < 2:
            raise ConfigError(f"config key 'strategy.ways': an episode needs at least 2 classes, got {st.ways}")
        if root is not None and root.data.get("unlabeled") and root.data.unlabeled_ratio > 0:
            raise ConfigError("strategy=protonet trains on episodes of labelled data and reads no unlabelled batches; "
                              "drop data.unlabeled (or set data.unlabeled_ratio=0 to evaluate on it only)")


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

    @classmethod
    def check(cls, loss, root=None) -> None:
        check_choice(loss.weighting, ("none", "inverse", "effective"), "loss.weighting")
        check_in(loss.beta, 0.0, 1.0, "loss.beta", low_open=True, hint=" (e.g. 0.999)")
        if root is not None and loss.name == "group_dro":
            data = root.data
            if not OmegaConf.get_type(data).has_groups(data):
                raise ConfigError(f"loss=group_dro needs groups in the data: {GROUP_SOURCES}")
        check_positive(loss.eta, "loss.eta", allow_none=False)
        if loss.gamma < 0:
            raise ConfigError(f"config key 'loss.gamma': must be >= 0 (0: cross-entropy), got {loss.gamma}")
        check_in(loss.label_smoothing, 0.0, 1.0, "loss.label_smoothing")


OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "onecycle", "none")


@dataclass
class OptimizerConf:
    name: str = "adamw"  # adamw | sgd
    weight_decay: float = 0.01
    momentum: float = 0.9  # sgd only
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw only
    nesterov: bool = False

    @classmethod
    def check(cls, node, root=None) -> None:
        check_choice(node.name, OPTIMIZERS, "optimizer.name")


@dataclass
class SchedulerConf:
    name: str = "cosine"  # cosine | onecycle | none
    warmup_epochs: float = 0.0  # cosine only; may be fractional
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of the peak lr
    pct_start: float = 0.3  # onecycle only

    @classmethod
    def check(cls, node, root=None) -> None:
        check_choice(node.name, SCHEDULERS, "scheduler.name")


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
    val_check_interval: Any = None  # a share of an epoch (float <= 1), a step count (int), or a duration
    check_val_every_n_epoch: Optional[int] = 1  # null: validate every val_check_interval steps, across epochs
    num_sanity_val_steps: Optional[int] = None
    log_every_n_steps: Optional[int] = None
    accumulate_grad_batches: int = 1
    gradient_clip_val: Optional[float] = None
    gradient_clip_algorithm: Optional[str] = None
    deterministic: Any = None
    benchmark: Optional[bool] = None
    sync_batchnorm: bool = False
    detect_anomaly: bool = False
    enable_model_summary: bool = False  # Lightning's model table; the harness prints one line (callbacks.model_summary)
    profiler: Optional[str] = None
    # not Trainer arguments: applied to the model by the harness
    channels_last: bool = False  # NHWC memory format for convolutional backbones (faster on tensor cores)
    # torch.compile the backbone (nn.Module.compile keeps checkpoint keys unchanged): false | true (inductor) | a
    # backend: inductor, aot_eager (traced, run eagerly: isolates tracing from code generation), eager (tracing only)
    compile: Any = False

    @classmethod
    def check(cls, tr, root=None) -> None:
        devices = tr.devices
        ok = devices == "auto" or devices == -1 or (isinstance(devices, int) and devices >= 1) or \
            (isinstance(devices, str) and devices.strip("-").isdigit() and int(devices) != 0) or \
            (isinstance(devices, str) and "," in devices and all(d.strip().isdigit() for d in devices.split(","))) or \
            (isinstance(devices, ListConfig) and len(devices) > 0 and all(isinstance(d, int) and d >= 0 for d in devices))
        if not ok:
            raise ConfigError(f"config key 'trainer.devices': '{devices}' is not valid; valid: a count >= 1, -1 (all), "
                              "auto, or a list of device ids such as [0,1]")
        if str(tr.precision) not in PRECISIONS:
            raise ConfigError(f"config key 'trainer.precision': '{tr.precision}' is not valid; valid: "
                              f"{', '.join(PRECISIONS)}")
        if tr.max_epochs == 0 or tr.max_epochs < -1 or (tr.max_epochs == -1 and tr.max_steps <= 0 and not tr.max_time):
            raise ConfigError(f"config key 'trainer.max_epochs': must be >= 1 (or -1 with trainer.max_steps or "
                              f"trainer.max_time), got {tr.max_epochs}")
        interval = tr.val_check_interval
        if isinstance(interval, bool) or not (interval is None or isinstance(interval, (int, float, str))) or \
                (isinstance(interval, (int, float)) and interval <= 0) or \
                (isinstance(interval, float) and interval > 1):
            raise ConfigError(f"config key 'trainer.val_check_interval': {interval} is not valid; valid: a share of "
                              "an epoch in (0, 1], a number of steps (an integer), or a duration 'DD:HH:MM:SS'")
        if tr.check_val_every_n_epoch is None and not isinstance(interval, (int, str)):
            raise ConfigError("config key 'trainer.check_val_every_n_epoch': null validates every "
                              "trainer.val_check_interval steps, which must then be an integer number of steps (or a "
                              f"duration), got {interval}")
        if tr.accelerator in ("gpu", "cuda") and not gpu_visible():
            raise ConfigError(f"trainer.accelerator={tr.accelerator} but this machine has no GPU; use trainer=cpu "
                              "(or trainer=ddp_cpu for two processes)")
        if not isinstance(tr.compile, bool) and tr.compile not in COMPILE_BACKENDS:
            raise ConfigError(f"config key 'trainer.compile': '{tr.compile}' is not valid; valid: false, true (inductor), "
                              f"{', '.join(COMPILE_BACKENDS)}")
        if str(tr.strategy).startswith("fsdp") and tr.accelerator not in ("gpu", "cuda", "auto"):
            raise ConfigError(f"trainer.strategy={tr.strategy} with trainer.accelerator={tr.accelerator}: Lightning runs "
                              "FSDP on CUDA GPUs only; on CPUs use trainer=ddp_cpu (or backbone.grad_checkpointing=true "
                              "for less activation memory)")


COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")  # trainer.compile's torch.compile backends
PRECISIONS = ("64", "64-true", "32", "32-true", "16", "16-mixed", "bf16", "bf16-mixed", "16-true", "bf16-true",
              "transformer-engine", "transformer-engine-float16")


def gpu_visible() -> bool:
    """An NVIDIA or AMD GPU device node exists, or Apple's MPS may (checked without importing torch)."""
    if sys.platform == "darwin":  # accelerator=gpu means MPS there; torch decides
        return True
    return any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd")) or \
        os.path.isdir("/proc/driver/nvidia/gpus") and bool(os.listdir("/proc/driver/nvidia/gpus"))


MODEL_SWITCHES = ("channels_last", "compile")  # TrainerConf fields that are not passed to lightning.Trainer


@dataclass
class WandbConf:
    project: str = "tl-lightning"
    entity: Optional[str] = None
    name: Optional[str] = None
    group: Optional[str] = None  # default: the sweep's name in a multirun
    tags: List[str] = field(default_factory=list)  # W&B tags of the run
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


# Each callback node names what builds it (``_target_``, instantiated by Hydra with the node's other keys);
# ``enabled`` switches it; ``run_dir`` is the run's dir, for callbacks that write files there.
RUN_DIR = "${paths.output_dir}"


@dataclass
class ModelCheckpointConf:
    _target_: str = "tl_lightning.callbacks.factory.run_checkpoints"  # best.ckpt, and last.ckpt every epoch
    enabled: bool = True
    run_dir: str = RUN_DIR
    monitor: str = "${optimized_metric}"
    mode: str = "max"
    save_last: bool = True
    save_top_k: int = 1


@dataclass
class EarlyStoppingConf:
    _target_: str = "lightning.pytorch.callbacks.EarlyStopping"
    enabled: bool = True
    monitor: str = "${optimized_metric}"
    mode: str = "max"
    patience: int = 5
    min_delta: float = 0.0


@dataclass
class RichProgressBarConf:
    """Rich's live bar in a terminal, one line per epoch in a log (tl_lightning/callbacks/progress.py); off:
    Lightning's own tqdm bar."""

    _target_: str = "tl_lightning.callbacks.progress.terminal_progress_bar"
    enabled: bool = True
    interactive: Optional[bool] = None  # null: Rich's bar when stdout is a terminal; true / false: force one


@dataclass
class ModelSummaryConf:
    """One line when training starts: parameters (trainable, frozen), modules the strategy keeps in eval mode
    (tl_lightning/callbacks/model_summary.py). Lightning's table: trainer.enable_model_summary=true."""

    _target_: str = "tl_lightning.callbacks.model_summary.ParameterSummary"
    enabled: bool = True


@dataclass
class ConfusionMatrixConf:
    """<run dir>/confusion_{val,test}.png and the loggers (tl_lightning/callbacks/confusion_matrix.py)."""

    _target_: str = "tl_lightning.callbacks.confusion_matrix.ConfusionMatrixPlot"
    enabled: bool = True
    run_dir: str = RUN_DIR


@dataclass
class LrMonitorConf:
    _target_: str = "tl_lightning.callbacks.learning_rates.LearningRates"
    enabled: bool = True
    logging_interval: str = "step"


@dataclass
class FairnessMonitorConf:
    """Watches a slice metric on validation (tl_lightning/callbacks/fairness.py) and acts when it degrades."""

    _target_: str = "tl_lightning.callbacks.fairness.FairnessMonitor"
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

    _target_: str = "tl_lightning.callbacks.diagnostics.CollapseWatch"
    enabled: bool = True
    max_tv: float = 0.5  # total variation between the predicted-class and the label histograms


@dataclass
class PlateauConf:
    """Warn once when the monitored metric falls for ``patience`` epochs after its best, or stays flat."""

    _target_: str = "tl_lightning.callbacks.diagnostics.PlateauWatch"
    enabled: bool = True
    monitor: str = "${optimized_metric}"
    mode: str = "${callbacks.model_checkpoint.mode}"
    patience: int = 3
    min_delta: float = 0.005


@dataclass
class SaliencyConf:
    """Grad-CAM maps of fixed validation images once fit ends (tl_lightning/callbacks/saliency.py)."""

    _target_: str = "tl_lightning.callbacks.saliency.SaliencyGrid"
    enabled: bool = False
    run_dir: str = RUN_DIR
    per_class: int = 2  # images per class
    max_classes: int = 10  # the first classes only, for data with many


@dataclass
class WeightAveragingConf:
    """Averaged weights, validated, checkpointed and tested in place of the training ones
    (tl_lightning/callbacks/weight_averaging.py)."""

    _target_: str = "tl_lightning.callbacks.weight_averaging.AveragedWeights"
    enabled: bool = False
    kind: str = "ema"  # ema: moving average after every step | swa: equal average of the epoch ends from start_epoch
    decay: float = 0.998  # ema: the average's decay per step (with warmup: min(decay, (1 + n) / (10 + n)))
    warmup: bool = True  # ema: the decay ramps up over the first updates (timm's ModelEmaV3)
    start_step: int = 0  # ema: first optimizer step averaged
    start_epoch: Optional[int] = None  # swa: first epoch averaged (null: the last quarter of trainer.max_epochs)

    @classmethod
    def check(cls, wa, root=None) -> None:
        check_choice(wa.kind, WEIGHT_AVERAGING_KINDS, "callbacks.weight_averaging.kind")
        check_in(wa.decay, 0.0, 1.0, "callbacks.weight_averaging.decay")
        if wa.start_step < 0 or (wa.start_epoch is not None and wa.start_epoch < 0):
            raise ConfigError("callbacks.weight_averaging.start_step / start_epoch: >= 0, got "
                              f"{wa.start_step} / {wa.start_epoch}")
        if not wa.enabled or root is None:
            return
        st = root.strategy
        if st.name == "linear_probe" and st.get("probe") == "lbfgs":
            raise ConfigError("callbacks.weight_averaging averages optimizer steps; strategy=linear_probe with "
                              "strategy.probe=lbfgs solves the head without any (use strategy.probe=sgd, or drop it)")
        if root.callbacks.fairness.enabled and root.callbacks.fairness.action == "rollback":
            raise ConfigError("callbacks.fairness.action=rollback restores the training weights of an earlier epoch, "
                              "which callbacks.weight_averaging replaces by their average: use action=warn or stop")


WEIGHT_AVERAGING_KINDS = ("ema", "swa")


@dataclass
class TemperatureScalingConf:
    """One temperature fitted on the best checkpoint's validation logits once fit ends, folded into its head, so test,
    eval, predict and export give calibrated probabilities (tl_lightning/callbacks/calibration.py)."""

    _target_: str = "tl_lightning.callbacks.calibration.TemperatureScaling"
    enabled: bool = False


# criteria that take soft targets (class probabilities), as Mixup / CutMix give
SOFT_TARGET_CRITERIA = ("ce", "class_balanced", "logit_adjusted", "balanced_softmax")


@dataclass
class MixupConf:
    """Mixup / CutMix of each training batch of images with soft targets (tl_lightning/callbacks/mixup.py)."""

    _target_: str = "tl_lightning.callbacks.mixup.MixupCutmix"
    enabled: bool = False
    mixup_alpha: float = 0.2  # Beta(alpha, alpha) mixing ratio of Mixup (0: no Mixup)
    cutmix_alpha: float = 0.0  # Beta(alpha, alpha) area ratio of CutMix (0: no CutMix)
    prob: float = 1.0  # share of batches mixed
    switch_prob: float = 0.5  # with both alphas > 0: share of the mixed batches that use CutMix
    seed: int = "${seed}"

    @classmethod
    def check(cls, mix, root=None) -> None:
        for key in ("mixup_alpha", "cutmix_alpha"):
            if mix[key] < 0:
                raise ConfigError(f"config key 'callbacks.mixup.{key}': >= 0 (0: off), got {mix[key]}")
        check_in(mix.prob, 0.0, 1.0, "callbacks.mixup.prob", high_open=False)
        check_in(mix.switch_prob, 0.0, 1.0, "callbacks.mixup.switch_prob", high_open=False)
        if not mix.enabled or root is None:
            return
        if mix.mixup_alpha == 0 and mix.cutmix_alpha == 0:
            raise ConfigError("callbacks.mixup.enabled=true mixes nothing with mixup_alpha=0 and cutmix_alpha=0: set "
                              "one of them (e.g. callbacks.mixup.mixup_alpha=0.2)")
        if root.loss.name not in SOFT_TARGET_CRITERIA:
            raise ConfigError(f"callbacks.mixup gives soft targets, which loss={root.loss.name} cannot take; use one "
                              f"of {', '.join(SOFT_TARGET_CRITERIA)}")
        if "augment" not in root.data:
            raise ConfigError(f"callbacks.mixup mixes images; data={root.data.name} is text")
        if root.strategy.name in ("linear_probe", "protonet"):
            what = "cached features" if root.strategy.name == "linear_probe" else "episodes"
            raise ConfigError(f"callbacks.mixup mixes the images of ordinary training batches; strategy="
                              f"{root.strategy.name} trains on {what}")


@dataclass
class OptunaPruningConf:
    """Pruning of hparams_search=optuna trials (tl_lightning/callbacks/pruning.py): each validation's monitored metric
    is reported to the trial, and a trial that falls behind the others is recorded PRUNED and stopped. Not built
    outside such a search (trial unset)."""

    _target_: str = "tl_lightning.callbacks.pruning.optuna_pruning"
    enabled: bool = True
    # median (behind the median of earlier trials at the same epoch) | hyperband | none (report, never prune)
    pruner: str = "median"
    startup_trials: int = 4  # median: trials that run to the end before any is pruned
    warmup_epochs: int = 2  # epochs every trial runs before it can be pruned (hyperband: its minimum resource)
    monitor: str = "${optimized_metric}"
    # set for each job by the sweeper (hydra/sweeper=tl_optuna), not by hand
    trial: Optional[int] = None
    study: Optional[str] = None
    storage: Optional[str] = None

    @classmethod
    def check(cls, node, root=None) -> None:
        check_choice(node.pruner, ("median", "hyperband", "none"), "callbacks.optuna_pruning.pruner")
        for key in ("startup_trials", "warmup_epochs"):
            if node[key] < 0:
                raise ConfigError(f"config key 'callbacks.optuna_pruning.{key}': must be >= 0, got {node[key]}")
        if node.trial is not None and not (node.study and node.storage):
            raise ConfigError("callbacks.optuna_pruning.trial is set by the Optuna sweeper with its study and storage; "
                              "run a search with hparams_search=optuna instead of setting it")


@dataclass
class CallbacksConf:
    model_checkpoint: ModelCheckpointConf = field(default_factory=ModelCheckpointConf)
    early_stopping: EarlyStoppingConf = field(default_factory=EarlyStoppingConf)
    lr_monitor: LrMonitorConf = field(default_factory=LrMonitorConf)
    rich_progress_bar: RichProgressBarConf = field(default_factory=RichProgressBarConf)
    model_summary: ModelSummaryConf = field(default_factory=ModelSummaryConf)
    confusion_matrix: ConfusionMatrixConf = field(default_factory=ConfusionMatrixConf)
    fairness: FairnessMonitorConf = field(default_factory=FairnessMonitorConf)
    collapse: CollapseConf = field(default_factory=CollapseConf)
    plateau: PlateauConf = field(default_factory=PlateauConf)
    saliency: SaliencyConf = field(default_factory=SaliencyConf)
    weight_averaging: WeightAveragingConf = field(default_factory=WeightAveragingConf)
    temperature_scaling: TemperatureScalingConf = field(default_factory=TemperatureScalingConf)
    mixup: MixupConf = field(default_factory=MixupConf)
    optuna_pruning: OptunaPruningConf = field(default_factory=OptunaPruningConf)
    # any further Lightning callbacks, each a {_target_: ..., ...} node
    extra: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def check(cls, cb, root=None) -> None:
        WeightAveragingConf.check(cb.weight_averaging, root)
        MixupConf.check(cb.mixup, root)
        OptunaPruningConf.check(cb.optuna_pruning, root)
        for key in ("model_checkpoint", "early_stopping", "fairness", "plateau"):
            check_choice(cb[key].mode, ("min", "max"), f"callbacks.{key}.mode")
        fairness = cb.fairness
        check_choice(fairness.action, FAIRNESS_ACTIONS, "callbacks.fairness.action")
        check_choice(fairness.after_rollback, ("continue", "stop"), "callbacks.fairness.after_rollback")
        check_positive(fairness.patience, "callbacks.fairness.patience", allow_none=False)
        check_positive(cb.plateau.patience, "callbacks.plateau.patience", allow_none=False)
        check_positive(cb.saliency.per_class, "callbacks.saliency.per_class", allow_none=False)
        check_positive(cb.saliency.max_classes, "callbacks.saliency.max_classes", allow_none=False)
        if not 0.0 < cb.collapse.max_tv <= 1.0:
            raise ConfigError(f"config key 'callbacks.collapse.max_tv': a total-variation distance in (0, 1], got "
                              f"{cb.collapse.max_tv}")
        if fairness.max_gap is not None and fairness.mode != "min":
            raise ConfigError("callbacks.fairness.max_gap bounds a gap (lower is better): it needs "
                              "callbacks.fairness.mode=min")


@dataclass
class PathsConf:
    root_dir: str = "${hydra:runtime.cwd}"
    data_dir: str = "${paths.root_dir}/data"  # downloads (data.download=true)
    log_dir: str = "${paths.root_dir}/logs"  # run dirs
    output_dir: str = "${hydra:runtime.output_dir}"
    cache_dir: str = "${paths.root_dir}/.cache"  # cached features

    @classmethod
    def check(cls, paths, root=None) -> None:
        """A folder the run writes into (or creates) that is a file: one line now, not after the model loaded."""
        for key in ("data_dir", "log_dir", "cache_dir"):
            path = paths.get(key)
            if not path:
                continue
            found = os.path.abspath(path)
            while found and not os.path.exists(found) and os.path.dirname(found) != found:
                found = os.path.dirname(found)  # the nearest part of the path that exists
            if os.path.exists(found) and not os.path.isdir(found):
                raise ConfigError(f"paths.{key}={path}: {found} is a file, not a folder; give a folder (or leave "
                                  f"paths.{key} unset)")


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
    task_name: str = "train"  # names the run dir's parent (logs/<task_name>/runs/...)
    seed: int = 0  # the run's seed: initialisation, batch order, augmentation and (through data.seed) the split
    optimized_metric: str = "val/acc"  # what selects the best checkpoint and what sweepers optimise: any logged metric
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
    tta: str = "none"  # test-time augmentation of images: none | flip (2 views) | crops (5 crops x 2 flips)
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
    tta: str = "none"  # test-time augmentation of images: none | flip (2 views) | crops (5 crops x 2 flips)
    task_name: str = "predict"


@dataclass
class ExportConf(CheckpointTaskConf):
    format: str = "onnx"  # onnx | torchscript | hf (a Hugging Face model folder: model.safetensors, config.json, README.md)
    output: Optional[str] = None  # null: <the checkpoint's run dir>/export/<checkpoint name>.<onnx|pt> or <name>-hf/
    push: bool = False  # format=hf: upload the folder to the Hugging Face Hub (huggingface_hub; needs a login token)
    repo_id: Optional[str] = None  # push=true: <user or org>/<model name>
    private: bool = True  # push=true: create the repo private (an existing repo keeps its visibility)
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
    # kind=data: a data option (conf/data/<name>.yaml) with its defaults, or one with overrides: {name: image_folder,
    # root: <folder>}
    data: Optional[Any] = None
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
GAP_MIN_SAMPLES = 10  # a side, for the gap's tests (5-fold domain classifier, covariances)
REFERENCE_KINDS = ("data", "source", "halves")
FEATURE_SPLITS = ("train", "val", "test")
EXPORT_FORMATS = ("onnx", "torchscript", "hf")
EVAL_SPLITS = ("auto", "test", "val", "train", "all")
TTA_MODES = ("none", "flip", "crops")  # tl_lightning/deploy/tta.py
BN_POLICIES = ("train", "freeze_stats", "freeze")
PHASE_SCHEDULES = ("global", "restart")
PROGRESSIVE_SCHEDULES = ("epochs", "plateau", "phases")
FISHER_SOURCES = ("auto", "source", "target", "uniform")


def modality_of(data) -> str:
    """image | text: what the samples of a validated data node are (its schema says)."""
    node_type = OmegaConf.get_type(data)
    return node_type.modality(data) if isinstance(node_type, type) and issubclass(node_type, DataConf) else "image"


def schema_of(group: str, node) -> type:
    """The schema of a data/strategy node (or option name): its type, or the schema its option file names."""
    if isinstance(node, str):
        node = OmegaConf.create({"name": node})
    node_type = OmegaConf.get_type(node)
    if node_type is not None and dataclasses.is_dataclass(node_type):
        return node_type

    option = OmegaConf.load(os.path.join(CONFIG_DIR, group, f"{node.name}.yaml"))
    name = next(d for d in option.defaults if isinstance(d, str) and d.startswith("schema"))
    return OmegaConf.get_type(ConfigStore.instance().load(f"{group}/{name}.yaml").node)


def store_schemas() -> None:
    """Register the primary configs' schemas in Hydra's ConfigStore (idempotent; the option schemas register
    themselves with ``@in_config_store``)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConf)
    for name, node in (("eval_schema", EvalConf), ("predict_schema", PredictConf), ("export_schema", ExportConf),
                       ("diagnose_schema", DiagnoseConf)):
        cs.store(name=name, node=node)


store_schemas()
