"""Cached features for a frozen backbone (linear_probe with data.augment=none).

The backbone runs once over train/val/test with the eval transform; the head then trains on the
tensors. The cache file is keyed by everything that changes the features (architecture, a hash of the
backbone's weights, the split fingerprint and sizes, the class subset and the transform). On load the
key and a checksum of the tensors are checked; a stale, mismatched or unreadable file is rebuilt.
"""

import hashlib
import json
import logging
import os
from typing import Any, Dict, Tuple

import torch
from torch.utils.data import DataLoader, Dataset

from tl_lightning.atomic import atomic_torch_save
from tl_lightning.backbones.weights import weights_digest
from tl_lightning.batch import KEYS, collect, sample
from tl_lightning.data.base import batch_size_for, shuffle_kwargs
from tl_lightning.data.wrapped import WrappedDataModule

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def cache_key(backbone, datamodule) -> Dict[str, Any]:
    return {
        "version": 2,
        "architecture": backbone.arch,
        "weights": weights_digest(backbone)[:16],
        "split": {k: datamodule.split_info.get(k) for k in ("dataset", "fingerprint", "sizes", "kept_class_ids",
                                                             "samples_per_class", "shortcut")},
        "transform": repr(datamodule.plain_loader("train", 1).dataset.transform),
    }


def _checksum(tensors: Dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].contiguous().numpy().tobytes())
    return h.hexdigest()


def extract(backbone, datamodule, batch_size: int, splits=SPLITS) -> Dict[str, torch.Tensor]:
    """Features of the splits with the eval transform: {split}_{x,target,group,index} tensors."""
    out = {}
    for split in splits:
        got = collect(lambda b: backbone(b["inputs"]), datamodule.plain_loader(split, batch_size), [backbone])
        out[f"{split}_x"] = got["outputs"]
        for key in KEYS[1:]:
            out[f"{split}_{key}"] = got[key]
    return out


def load_or_build(backbone, datamodule, cache_dir: str, batch_size: int) -> Tuple[Dict[str, torch.Tensor], str]:
    """Return (tensors, how) where how is 'hit' or the reason for a rebuild."""
    key = cache_key(backbone, datamodule)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = os.path.join(cache_dir, "features", f"{key['architecture']['name']}-{digest}.pt")
    how = "miss"
    if os.path.exists(path):
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("key") != key:
                how = "stale (key differs)"
            elif _checksum(blob["tensors"]) != blob.get("checksum"):
                how = "corrupt (checksum differs)"
            else:
                log.info("features from cache %s", path)
                return blob["tensors"], "hit"
        except Exception as exc:
            how = f"unreadable ({type(exc).__name__})"
        log.warning("feature cache %s is %s; rebuilding", path, how)
    tensors = extract(backbone, datamodule, batch_size)
    # atomic: a concurrent reader sees the old file or the new one
    atomic_torch_save({"key": key, "tensors": tensors, "checksum": _checksum(tensors)}, path)
    log.info("features cached in %s (%s)", path, how)
    return tensors, how


class FeatureDataset(Dataset):
    """Cached features of one split, items in the batch shape."""

    def __init__(self, tensors: Dict[str, torch.Tensor], split: str):
        self.x, self.target = tensors[f"{split}_x"], tensors[f"{split}_target"]
        self.group, self.index = tensors[f"{split}_group"], tensors[f"{split}_index"]

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, k: int):
        return sample(self.x[k], self.target[k], self.index[k], self.group[k])


class FeatureDataModule(WrappedDataModule):
    """Train/val/test loaders over cached features, with the original datamodule's batch sizes."""

    def __init__(self, tensors: Dict[str, torch.Tensor], wrapped, how: str = "miss"):
        super().__init__(wrapped)
        self.tensors = tensors
        self.how = how  # hit, or why the cache was (re)built

    def summary_sections(self) -> Dict[str, Any]:
        return {"feature_cache": self.how}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        cfg = self.unwrapped.cfg
        dataset = FeatureDataset(self.tensors, split)
        return DataLoader(dataset, batch_size=batch_size_for(cfg, split),
                          **shuffle_kwargs(self, len(dataset), cfg.seed, shuffle, dataset.target.numpy(),
                                           dataset.group.numpy()))

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)
