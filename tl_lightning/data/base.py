"""The datamodule every dataset shares: splits, labeled budget, loaders in the batch shape.

Subclasses provide raw samples (``load``); the backbone's preprocessing turns them into model input
(transforms for train and eval, and a collate), so no datamodule writes a normalisation of its own.
"""

import logging
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from tl_lightning.context import DEFAULT_PATHS, DataPaths
from tl_lightning.data.decoded_cache import DecodedCache, as_is
from tl_lightning.data.groups import check_split_coverage
from tl_lightning.data.samplers import BalancedSampler, leave_stop_signals_to_main
from tl_lightning.data.shortcut import apply_shortcut, group_counts, group_names
from tl_lightning.data.sources import SplitDataset, class_counts
from tl_lightning.data.splits import (
    check_labels,
    duplicate_free,
    fingerprint,
    fold_split,
    label_map_for,
    long_tail_budget,
    per_class_subset,
    stratified_split,
)
from tl_lightning.data.unlabeled import TargetEvaluation, UnlabeledData, joined_batch
from tl_lightning.errors import ConfigError, DataError
from tl_lightning.task import TaskDescription

log = logging.getLogger(__name__)


@dataclass
class RawData:
    """What a dataset provides before splitting: a training pool and optional official splits."""

    train: Any
    class_names: List[str]
    val: Optional[Any] = None
    test: Optional[Any] = None


class TransferDataModule(L.LightningDataModule):
    """Subclasses implement ``load()``; splitting, budget and loaders are shared."""

    name = "base"
    modality = "image"  # what its raw samples are; the backbone's preprocessing must take the same

    def __init__(self, cfg, preprocessing, paths: DataPaths = DEFAULT_PATHS):
        super().__init__()
        if preprocessing.modality != self.modality:
            raise ConfigError(f"data={cfg.name} holds {self.modality} samples but the backbone takes "
                              f"{preprocessing.modality} input; choose a backbone for {self.modality} data")
        self.cfg = cfg
        self.preprocessing = preprocessing
        self.augment = cfg.get("augment", "none")  # image data only
        self.paths = paths  # downloads and caches (tl_lightning.context.DataPaths)
        self.download_dir = paths.data_dir  # where data.download=true puts files when data.root is unset
        self.datasets: Dict[str, SplitDataset] = {}
        self.loader_datasets: Dict[str, SplitDataset] = {}  # splits served from data.cache (decoded_cache.py)
        self.class_names: List[str] = []
        self.group_names: List[str] = []  # slice labels of batch["group"], when the data has groups
        self.split_info: Dict[str, Any] = {}
        self.task: Optional[TaskDescription] = None  # built by setup (tl_lightning/task.py)
        # data.unlabeled: a second source whose labels are never read (tl_lightning/data/unlabeled.py)
        self.as_unlabeled = False  # True: this is data.unlabeled's datamodule (UnlabeledData sets it)
        self.unlabeled: Optional[UnlabeledData] = UnlabeledData(cfg, preprocessing, paths) if cfg.get("unlabeled") \
            else None

    @property
    def unwrapped(self) -> "TransferDataModule":
        """The datamodule whose samples these are: itself (wrappers answer with the one they wrap)."""
        return self

    def load(self) -> RawData:
        raise NotImplementedError

    def callbacks(self, layout) -> list:
        """Lightning callbacks this kind of data brings to a training run (``layout``: the run dir's)."""
        return [TargetEvaluation(self.unlabeled, self)] if self.unlabeled is not None else []

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.datasets:
            return
        cfg = self.cfg
        raw = self.load()
        for part in (raw.train, raw.val, raw.test):
            if part is not None:
                check_labels(part.targets, len(raw.class_names), part.origin)
        label_map, self.class_names, kept = label_map_for(cfg.classes, raw.class_names, f"data={self.name}")
        unique, duplicates = duplicate_free([raw.train, raw.val, raw.test], log)
        keep = {id(src): mask for src, mask in zip((raw.train, raw.val, raw.test), unique) if mask is not None}

        def kept_indices(source):
            wanted = label_map[source.targets] >= 0
            return np.flatnonzero(wanted & keep[id(source)] if id(source) in keep else wanted)

        def labels(source, idx):
            return label_map[source.targets[idx]]

        pool = kept_indices(raw.train)
        test_source, test_idx = raw.test, None
        if raw.test is None:
            pool, test_idx = stratified_split(pool, labels(raw.train, pool), cfg.test_fraction, cfg.seed, "test",
                                              self.class_names)
            test_source = raw.train
        else:
            test_idx = kept_indices(raw.test)
        val_source, val_idx = raw.val, None
        folds = cfg.get("folds")
        if folds is not None:  # k-fold: validation is fold data.fold of the pool, the budget comes from the others
            if raw.val is not None:
                raise DataError(f"data.folds={folds}: data={self.name} has its own validation split; k-fold draws "
                                "validation from the training pool (a dataset without a val split, e.g. class folders)")
            pool, val_idx = fold_split(pool, labels(raw.train, pool), folds, cfg.fold, cfg.seed + 1, self.class_names)
            val_source = raw.train
        elif raw.val is None:
            pool, val_idx = stratified_split(pool, labels(raw.train, pool), cfg.val_fraction, cfg.seed + 1, "val",
                                             self.class_names)
            val_source = raw.train
        else:
            val_idx = kept_indices(raw.val)
        train_idx = pool
        budget = self.train_budget()
        if budget is not None:
            train_idx = per_class_subset(pool, labels(raw.train, pool), budget, cfg.seed, self.class_names,
                                         "samples_per_class" if np.isscalar(budget) else "imbalance", strict=True)
        if cfg.eval_per_class is not None:
            val_idx = per_class_subset(val_idx, labels(val_source, val_idx), cfg.eval_per_class, cfg.seed + 2,
                                       self.class_names, "eval_per_class", strict=False)
            test_idx = per_class_subset(test_idx, labels(test_source, test_idx), cfg.eval_per_class, cfg.seed + 3,
                                        self.class_names, "eval_per_class", strict=False)
        raw_splits = {"train": (raw.train, train_idx), "val": (val_source, val_idx), "test": (test_source, test_idx)}

        def verify(split: str) -> None:  # open each file once, so a corrupt image fails now, not mid-epoch
            source, idx = raw_splits[split]
            if hasattr(source, "verify"):
                source.verify(idx)

        prep, aug = self.preprocessing, self.augment
        self.datasets = {
            "train": SplitDataset(raw.train, train_idx, label_map, prep.transform(train=True, augment=aug)),
            "val": SplitDataset(val_source, val_idx, label_map, prep.transform(train=False)),
            "test": SplitDataset(test_source, test_idx, label_map, prep.transform(train=False)),
        }
        self.split_info = {
            "dataset": self.name,
            "split_seed": cfg.seed,
            "samples_per_class": cfg.samples_per_class,
            "train_budget": budget if budget is None or np.isscalar(budget) else list(budget),
            "kept_class_ids": kept,
            "sizes": {k: len(v) for k, v in self.datasets.items()},
            "class_counts": {k: class_counts(v.targets, self.num_classes) for k, v in self.datasets.items()},
            "fingerprint": fingerprint(train_idx, val_idx, test_idx),
        }
        if folds is not None:
            self.split_info["folds"] = {"k": folds, "fold": cfg.fold}
        if duplicates["removed"] or any(m is not None for m in unique):
            self.split_info["duplicates"] = duplicates  # only sources that can be checked (files) report it
        shortcut = cfg.get("shortcut")
        if shortcut is not None and shortcut.kind is not None:
            self.split_info["shortcut"] = apply_shortcut(self.datasets, shortcut, self.num_classes, cfg.seed)
            self.group_names = group_names(self.class_names)
        if self.group_names:  # the shortcut's, or the source's own (data.groups_csv, text_csv's data.group_column)
            counts = group_counts(self.datasets, len(self.group_names))
            self.split_info["groups"] = {"names": self.group_names, "counts": counts}
            absent = check_split_coverage(self.group_names, counts)
            if absent:
                self.split_info["groups"]["absent_in_val"] = absent
        self.task = TaskDescription.from_split_info(self.class_names, self.group_names, self.split_info)
        # data.cache: the splits the loaders read decoded once (a valid cache file was verified when it was built)
        self.loader_datasets = DecodedCache(self).build(verify)
        for split in raw_splits:
            if split not in self.loader_datasets:
                verify(split)
        self.setup_unlabeled()

    def setup_unlabeled(self) -> None:
        """data.unlabeled set up next to this set-up datamodule: its split joins the fingerprint, the metrics it
        logs join the task description."""
        if self.unlabeled is None:
            return
        self.split_info["unlabeled"] = self.unlabeled.setup(self)
        self.split_info["fingerprint"] = self.unlabeled.fingerprint(self.split_info["fingerprint"])
        self.task = replace(self.task, target_metrics=self.unlabeled.target_metric_names())

    def train_budget(self):
        """Training samples per class: None (all), one int (data.samples_per_class), or one per class (a
        long-tailed budget, data.imbalance)."""
        cfg, imbalance = self.cfg, self.cfg.get("imbalance")
        if imbalance is None or (imbalance.ratio is None and imbalance.counts is None):
            return cfg.samples_per_class
        if imbalance.counts is not None:
            if len(imbalance.counts) != self.num_classes:
                raise ConfigError(f"data.imbalance.counts has {len(imbalance.counts)} entries but data={self.name} has "
                                  f"{self.num_classes} classes ({', '.join(self.class_names)}); give one per class")
            return list(imbalance.counts)
        if cfg.samples_per_class is None:
            raise ConfigError("data.imbalance.ratio needs data.samples_per_class (the head class's budget), "
                              f"e.g. data.samples_per_class=100 data.imbalance.ratio={imbalance.ratio}")
        return long_tail_budget(cfg.samples_per_class, self.num_classes, imbalance.ratio, imbalance.order, cfg.seed)

    @property
    def train_is_deterministic(self) -> bool:
        """The training samples are the same every epoch (no augmentation): features may be cached."""
        return self.preprocessing.deterministic(self.augment)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        cfg = self.cfg
        dataset, workers = self.loader_datasets.get(split, self.datasets[split]), cfg.num_workers
        if getattr(dataset, "transform", None) is as_is:  # decoded rows read as they are: workers would only add
            workers = 0  # copies between processes
        return DataLoader(
            dataset, batch_size=batch_size_for(cfg, split), num_workers=workers,
            pin_memory=cfg.pin_memory, persistent_workers=workers > 0, collate_fn=self.preprocessing.collate,
            worker_init_fn=leave_stop_signals_to_main,
            **shuffle_kwargs(self, len(self.datasets[split]), cfg.seed, shuffle, self.datasets[split].targets,
                             self.datasets[split].sample_groups),
        )

    def plain_loader(self, split: str, batch_size: int, limit: Optional[int] = None) -> DataLoader:
        """A split with the eval transform (no augmentation), in a fixed order, optionally the first
        ``limit`` samples of a seeded permutation: for features, Fisher estimates and source evaluation."""
        ds = self.datasets[split]
        indices = ds.indices
        if limit is not None and limit < len(ds):
            indices = ds.indices[np.sort(np.random.default_rng(self.cfg.seed + 4).permutation(len(ds))[:limit])]
        plain = ds.with_transform(self.preprocessing.transform(train=False), indices)
        return DataLoader(plain, batch_size=batch_size, shuffle=False, num_workers=self.cfg.num_workers,
                          collate_fn=self.preprocessing.collate, worker_init_fn=leave_stop_signals_to_main)

    def eval_loader(self, split: str, limit: Optional[int] = None) -> DataLoader:
        """``plain_loader`` at the evaluation batch size (data.eval_batch_size, else data.batch_size)."""
        return self.plain_loader(split, batch_size_for(self.cfg, "test"), limit)

    def labelled_train_loader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def train_dataloader(self):
        """The labelled training loader; with data.unlabeled, joined batch for batch with the unlabelled one."""
        loader = self.labelled_train_loader()
        return self.unlabeled.join(loader, self) if self.unlabeled is not None else loader

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        return joined_batch(batch)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        return model_inputs(batch, self.preprocessing)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def model_inputs(batch, preprocessing):
    """A batch read from data.cache (uint8 images, now on the device) made model input by the preprocessing's
    batch transform (crop and flip for training batches, normalisation); any other batch unchanged."""
    inputs = batch.get("inputs") if isinstance(batch, dict) else None
    if isinstance(inputs, torch.Tensor) and inputs.dtype == torch.uint8:
        batch = {**batch, "inputs": preprocessing.batch_inputs(inputs)}
    return batch


def batch_size_for(cfg, split: str) -> int:
    """data.batch_size for training, data.eval_batch_size (default: the same) for val/test."""
    return cfg.batch_size if split == "train" else (cfg.eval_batch_size or cfg.batch_size)


class EpochShuffleSampler(Sampler):
    """A new order every epoch from (seed, epoch) alone, and the epoch's random stream (augmentation,
    dropout) reseeded from them when the epoch's iteration starts, so a run resumed at an epoch boundary
    continues exactly as the uninterrupted run (with trainer.deterministic=true). Lightning calls set_epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0
        self.worker_seeds = torch.Generator().manual_seed(seed)  # the DataLoader draws its workers' seeds here

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.worker_seeds.manual_seed(self.seed * 100_003 + epoch + 2)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        epoch_seed = self.seed * 100_003 + self.epoch
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(epoch_seed)).tolist()
        torch.manual_seed(epoch_seed + 1)
        return iter(order)


def shuffle_kwargs(datamodule, n: int, seed: int, shuffle: bool, labels=None, groups=None) -> Dict[str, Any]:
    """Under DDP Lightning swaps shuffle=True for a DistributedSampler, which is already seeded per epoch.
    ``labels`` and ``groups`` (of the training split): data.sampler=balanced draws every class equally often,
    group_balanced every group."""
    if not shuffle:
        return {"shuffle": False}
    trainer = getattr(datamodule, "trainer", None)
    sampler = datamodule_cfg(datamodule).get("sampler", "random")
    if labels is not None and sampler in ("balanced", "group_balanced"):
        if sampler == "group_balanced":
            if groups is None or not (np.asarray(groups) >= 0).all():
                raise ConfigError("data.sampler=group_balanced needs a group for every training sample "
                                  "(data.shortcut.kind=tint|patch); use data.sampler=balanced for classes")
            labels = groups
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        return {"sampler": BalancedSampler(labels, seed, world, rank)}
    if trainer is not None and trainer.world_size > 1:
        return {"shuffle": True}
    sampler = EpochShuffleSampler(n, seed)
    return {"sampler": sampler, "generator": sampler.worker_seeds}


def datamodule_cfg(datamodule):
    """The data config of a datamodule (a wrapper's: the one of the datamodule it wraps)."""
    return datamodule.unwrapped.cfg


def to_uint8(images: np.ndarray, max_value: float) -> np.ndarray:
    return np.clip(np.rint(images * (255.0 / max_value)), 0, 255).astype(np.uint8)
