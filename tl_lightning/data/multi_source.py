"""data=multi_source: several datamodules as one source task for pretraining a backbone.

Each entry of ``data.sources`` is a data option with its overrides (``{name: digits, samples_per_class: 100}``);
the option's own YAML supplies the rest, and the run's seed, image size, augmentation and loader settings apply
to every source (image data options). The union's classes are the sources' classes in order; each source is a
group (``batch["group"]``: testing reports accuracy per source, validation the mean and the worst), and the task's
``class_masks`` restrict every sample's logits to its own source's
classes: one linear layer acting as one head per source. ``data.sampler=random`` draws sources in proportion
to their size, ``group_balanced`` each source equally often.
"""

import hashlib
from typing import List, Optional

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from tl_lightning.config import load_option
from tl_lightning.config.validate import validate_data
from tl_lightning.context import DEFAULT_PATHS, DataPaths
from tl_lightning.data.base import RawData, TransferDataModule
from tl_lightning.data.registry import build_datamodule
from tl_lightning.data.sources import class_counts
from tl_lightning.errors import ConfigError
from tl_lightning.registry import DATAMODULES
from tl_lightning.task import TaskDescription

SHARED_KEYS = ("seed", "image_size", "augment", "batch_size", "eval_batch_size", "num_workers", "pin_memory")


class UnionSplit(Dataset):
    """One split of every source: labels offset into the union's label space, the source as the group."""

    def __init__(self, parts: List[Dataset], offsets: List[int], positions: Optional[np.ndarray] = None):
        self.parts, self.offsets = parts, offsets
        sizes = [len(p) for p in parts]
        self.source_of = np.repeat(np.arange(len(parts)), sizes)
        self.local = np.concatenate([np.arange(n) for n in sizes]) if sizes else np.zeros(0, dtype=np.int64)
        self.positions = np.arange(sum(sizes)) if positions is None else np.asarray(positions)

    @property
    def indices(self) -> np.ndarray:
        return self.positions

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def targets(self) -> np.ndarray:
        every = np.concatenate([p.targets + off for p, off in zip(self.parts, self.offsets)])
        return every[self.positions]

    @property
    def sample_groups(self) -> np.ndarray:
        return self.source_of[self.positions]

    def with_transform(self, transform, indices: Optional[np.ndarray] = None) -> "UnionSplit":
        return UnionSplit([p.with_transform(transform) for p in self.parts], self.offsets,
                          self.positions if indices is None else indices)

    def __getitem__(self, k: int):
        j = int(self.positions[k])
        s = int(self.source_of[j])
        item = self.parts[s][int(self.local[j])]
        return {**item, "target": item["target"] + self.offsets[s], "index": j, "group": s}


def source_config(name: str, node, shared) -> "OmegaConf":
    """A source's data config: its option's YAML, the shared run settings, then its own overrides; validated."""

    if not isinstance(node, dict) and not OmegaConf.is_dict(node) or not node.get("name"):
        raise ConfigError(f"config key 'data.sources.{name}': expected a data option with overrides, e.g. "
                          "{name: digits, samples_per_class: 100}")
    try:
        option = load_option("data", node["name"])
        keys = [k for k in SHARED_KEYS if k in shared and (k != "image_size" or "image_size" in option or shared[k])]
        return validate_data(OmegaConf.merge(option, {k: shared[k] for k in keys}, node))
    except ConfigError as exc:
        raise ConfigError(f"data.sources.{name}: {exc}") from None


@DATAMODULES.register()
class MultiSourceDataModule(TransferDataModule):
    name = "multi_source"

    def __init__(self, cfg, preprocessing, paths: DataPaths = DEFAULT_PATHS):
        super().__init__(cfg, preprocessing, paths)
        if not cfg.sources:
            raise ConfigError("data=multi_source needs data.sources: '++data.sources={<name>: {name: <data option>, "
                              "...}, ...}' (or an experiment config listing them)")
        shared = {k: cfg[k] for k in SHARED_KEYS if k in cfg}
        self.sources = {name: build_datamodule(source_config(name, node, shared), preprocessing, paths)
                        for name, node in cfg.sources.items()}

    def load(self) -> RawData:
        raise NotImplementedError("data=multi_source has no raw data of its own; its sources have")

    def setup(self, stage: Optional[str] = None) -> None:
        if self.datasets:
            return
        names, offsets, owner = [], [], {}
        for source, dm in self.sources.items():
            dm.setup(stage)
            offsets.append(len(names))
            for cls in dm.class_names:
                label = f"{source}:{cls}" if self.cfg.prefix_classes else cls
                if label in owner:
                    raise ConfigError(f"data.sources: class '{cls}' is in both '{owner[label]}' and '{source}'; the "
                                      "union's class names must be distinct: set data.prefix_classes=true (names "
                                      "become '<source>:<class>') or give the sources other classes")
                owner[label] = source
                names.append(label)
        self.class_names = names
        self.group_names = list(self.sources)
        class_masks = torch.zeros(len(self.sources), len(names), dtype=torch.bool)
        for s, (off, dm) in enumerate(zip(offsets, self.sources.values())):
            class_masks[s, off: off + dm.num_classes] = True
        self.datasets = {split: UnionSplit([dm.datasets[split] for dm in self.sources.values()], offsets)
                         for split in ("train", "val", "test")}
        digest = hashlib.sha256("|".join(dm.split_info["fingerprint"] for dm in self.sources.values()).encode())
        counts = {split: [int((ds.sample_groups == s).sum()) for s in range(len(self.sources))]
                  for split, ds in self.datasets.items()}
        self.split_info = {
            "dataset": self.name, "split_seed": self.cfg.seed, "samples_per_class": None, "train_budget": None,
            "kept_class_ids": list(range(len(names))),
            "sizes": {k: len(v) for k, v in self.datasets.items()},
            "class_counts": {k: class_counts(v.targets, len(names)) for k, v in self.datasets.items()},
            "fingerprint": digest.hexdigest()[:16],
            "groups": {"names": self.group_names, "counts": counts},
            "sources": {name: dm.split_info for name, dm in self.sources.items()},
        }
        # one head per source: each sample's logits restricted to its source's classes
        self.task = TaskDescription.from_split_info(names, self.group_names, self.split_info, class_masks)
        self.setup_unlabeled()
