"""data.cache: each image of a split decoded and resized once, kept as uint8, reused by every epoch.

A split's images are decoded by the source, turned to the backbone's channels, resized (shorter side) and
centre-cropped to a square of the side the backbone's preprocessing asks for (``cached_side``: the input size, or
8/7 of it for a training split whose random crops are cut on whole batches), and stored as one uint8 array
N x C x side x side. The loaders then read rows of that array instead of decoding files; the rest of the transform
runs on whole batches on the training device (``ImagePreprocessing.batch_inputs``, called from the datamodule's
``on_after_batch_transfer``), or per sample for the augmentation policies that are not batched.

``data.cache``:

- ``off``: decode every sample every epoch, as without a cache;
- ``memory``: the arrays in this process (rebuilt by every run);
- ``disk``: ``.npy`` files under ``<paths.cache_dir>/decoded/``, memory-mapped, so DataLoader workers, later
  runs, sweep jobs and DDP ranks on the machine share one copy;
- ``auto`` (default): ``disk`` (``memory`` without a cache dir) for sources that decode image files (class folders,
  Hugging Face image columns, torchvision's file datasets) when the cache fits in ``data.cache_max_gb``; ``off``
  for arrays already in memory (Fashion-MNIST, digits), which cost nothing to decode.

A file is named by what its rows are (dataset, origin, split indices, side, channels, interpolation; the shortcut
and seed when a shortcut recolours the images) and carries a sidecar JSON with a stamp of its contents (each file's
path, size and modification time; a digest of in-memory arrays) and a CRC of the array. A stale or damaged file is
rebuilt, with a one-line warning. Writers take a file lock, so concurrent sweep jobs or DDP ranks build a file once
and the others wait and map it. The split fingerprint, the samples and their order are those of the uncached run.
"""

import hashlib
import json
import logging
import os
import zlib
from typing import Any, Dict, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tl_lightning.atomic import atomic_write, atomic_write_with, remove_dead_temporaries, write_error
from tl_lightning.data.samplers import leave_stop_signals_to_main
from tl_lightning.data.sources import SplitDataset
from tl_lightning.errors import ConfigError

log = logging.getLogger(__name__)
VERSION = 1
SPLITS = ("train", "val", "test")


class DecodedSource:
    """A source whose samples are rows of a decoded uint8 array (``images``; a memory map for disk caches):
    ``sample(i)`` gives the C x side x side tensor of source index ``i``. Labels, groups and names are the
    wrapped source's."""

    def __init__(self, source, indices: np.ndarray, images: np.ndarray):
        self.source, self.images = source, images
        self.targets, self.origin = source.targets, source.origin
        self.groups = getattr(source, "groups", None)
        self.rows = np.full(len(source.targets), -1, dtype=np.int64)
        self.rows[np.asarray(indices, dtype=np.int64)] = np.arange(len(indices))

    def __len__(self) -> int:
        return len(self.targets)

    def name(self, i: int) -> str:
        return self.source.name(i) if hasattr(self.source, "name") else f"{self.origin}#{i}"

    def sample(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.images[self.rows[i]]))


def as_is(x):
    """The per-sample transform of a cached split whose batch does the rest (picklable, unlike a lambda)."""
    return x


class _Decode(Dataset):
    def __init__(self, source, indices, transform):
        self.source, self.indices, self.transform = source, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> torch.Tensor:
        return self.transform(self.source.sample(int(self.indices[k]))).as_subclass(torch.Tensor)


def decode(source, indices: np.ndarray, transform, shape, num_workers: int) -> np.ndarray:
    """Every sample of ``indices`` through ``transform`` (uint8, C x side x side), in order, as one array."""
    out = np.empty((len(indices), *shape), dtype=np.uint8)
    # its own generator: starting the loader draws a seed, and from the global stream that would move the model's
    # initialisation and every random draw after it (a cold cache and a warm one would train differently)
    loader = DataLoader(_Decode(source, indices, transform), batch_size=64, num_workers=num_workers,
                        collate_fn=torch.stack, worker_init_fn=leave_stop_signals_to_main, generator=torch.Generator())
    start = 0
    for batch in loader:
        out[start:start + len(batch)] = batch.numpy()
        start += len(batch)
    return out


def content_stamp(source, indices: np.ndarray) -> str:
    """What the cached rows were decoded from: each file's path, size and mtime; the bytes of in-memory arrays; a
    source's own ``content_stamp``; else only its origin and length (a source that cannot tell)."""
    h = hashlib.sha256()
    inner = getattr(source, "source", None)  # a wrapper (the shortcut's recolouring) stamps what it wraps
    base = inner if inner is not None and hasattr(inner, "targets") else source
    if hasattr(base, "content_stamp"):
        h.update(base.content_stamp(indices).encode())
    elif hasattr(base, "paths"):
        for i in indices:
            path = base.paths[int(i)]
            st = os.stat(path)
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    elif hasattr(base, "images"):
        h.update(np.ascontiguousarray(base.images[np.asarray(indices)]).tobytes())
    else:
        h.update(f"{base.origin}\0{len(base)}".encode())
    return h.hexdigest()


def decodes_files(source) -> bool:
    """Whether reading a sample decodes an image file (what the cache saves); arrays in memory do not."""
    return bool(getattr(source, "decodes_files", False))


def file_crc(path: str) -> int:
    crc = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):  # noqa: B023 (fh is this call's file)
            crc = zlib.crc32(block, crc)
    return crc


class DecodedCache:
    """data.cache for one set-up datamodule: ``build`` gives the split -> SplitDataset its loaders read."""

    def __init__(self, datamodule):
        self.dm = datamodule
        self.cfg = datamodule.cfg
        self.prep = datamodule.preprocessing
        self.mode = self.resolve()

    def sides(self) -> Dict[str, int]:
        augment = self.dm.augment
        return {s: self.prep.cached_side(train=s == "train", augment=augment) for s in SPLITS}

    def size_bytes(self) -> int:
        channels = self.prep.spec.channels
        return sum(len(self.dm.datasets[s]) * channels * side * side for s, side in self.sides().items())

    def resolve(self) -> str:
        """data.cache with auto decided: off, memory or disk."""
        mode = self.cfg.get("cache", "off")
        if mode == "off" or self.dm.as_unlabeled or getattr(self.prep, "modality", None) != "image":
            return "off"
        if mode == "auto":
            sources = [self.dm.datasets[s].source for s in SPLITS]
            if not any(decodes_files(s) for s in sources):
                return "off"
            limit = float(self.cfg.cache_max_gb) * 2**30
            need = self.size_bytes()
            if need > limit:
                log.info("data.cache=auto: the decoded splits need %.1f GiB, over data.cache_max_gb=%s: not cached",
                         need / 2**30, self.cfg.cache_max_gb)
                return "off"
            return "disk" if self.dm.paths.cache_dir else "memory"
        if mode == "disk" and not self.dm.paths.cache_dir:
            raise ConfigError("data.cache=disk needs paths.cache_dir (a folder for the decoded images); "
                              "or data.cache=memory")
        return mode

    def key(self, split: str, side: int) -> Dict[str, Any]:
        ds, spec, cfg = self.dm.datasets[split], self.prep.spec, self.cfg
        key = {
            "version": VERSION,
            "dataset": self.dm.name,
            "origin": str(ds.source.origin),
            "indices": hashlib.sha256(np.ascontiguousarray(ds.indices, dtype=np.int64).tobytes()).hexdigest(),
            "side": side,
            "channels": spec.channels,
            "interpolation": spec.interpolation,
        }
        shortcut = self.dm.split_info.get("shortcut")
        if shortcut is not None:
            key["shortcut"] = {"record": shortcut, "seed": cfg.seed}
        return key

    def build(self, verify) -> Dict[str, SplitDataset]:
        """The cached splits (empty when off). ``verify(split)`` checks a split's files before they are decoded."""
        if self.mode == "off":
            return {}
        out, sides = {}, self.sides()
        for split in SPLITS:
            ds = self.dm.datasets[split]
            if not len(ds):
                continue
            images = self.images(split, sides[split], lambda s=split: verify(s))
            source = DecodedSource(ds.source, ds.indices, images)
            transform = self.prep.cached_transform(train=split == "train", augment=self.dm.augment) or as_is
            out[split] = SplitDataset(source, ds.indices, ds.label_map, transform)
        self.dm.split_info["decoded_cache"] = {"mode": self.mode, "sides": {s: sides[s] for s in out}}
        return out

    def decode(self, split: str, side: int, verify) -> np.ndarray:
        verify()
        ds = self.dm.datasets[split]
        shape = (self.prep.spec.channels, side, side)
        return decode(ds.source, ds.indices, self.prep.decode_transform(side), shape, self.cfg.num_workers)

    def images(self, split: str, side: int, verify) -> np.ndarray:
        if self.mode == "memory":
            return self.decode(split, side, verify)
        key = self.key(split, side)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        folder = os.path.join(self.dm.paths.cache_dir, "decoded")
        path = os.path.join(folder, f"{self.dm.name}-{split}-{side}px-{digest}.npy")
        ds = self.dm.datasets[split]
        stamp = content_stamp(ds.source, ds.indices)
        return load_or_build(path, key, stamp, lambda: self.decode(split, side, verify))


def _meta_path(path: str) -> str:
    return path[: -len(".npy")] + ".json"


def _valid(path: str, key: Dict[str, Any], stamp: str) -> Optional[str]:
    """None when ``path`` is a complete cache of ``key`` decoded from ``stamp``; else why not (a short reason)."""
    meta_path = _meta_path(path)
    if not os.path.exists(path) and not os.path.exists(meta_path):
        return "missing"
    try:
        with open(meta_path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError) as exc:
        return f"its record {meta_path} is unreadable ({type(exc).__name__})"
    if meta.get("key") != key:
        return "its record names other samples"
    if meta.get("stamp") != stamp:
        return "the images it was decoded from have changed since"
    try:
        if os.path.getsize(path) != meta.get("bytes") or file_crc(path) != meta.get("crc"):
            return "its contents do not match their checksum"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    return None


def load_or_build(path: str, key: Dict[str, Any], stamp: str, build) -> np.ndarray:
    """The cached array at ``path`` (memory-mapped, read-only), built first when missing, stale or damaged. Holds
    ``<path>.lock`` meanwhile: a second process building the same file waits, then maps the first one's."""
    from filelock import FileLock

    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise write_error(path, exc) from None
    with FileLock(path + ".lock"):
        why = _valid(path, key, stamp)
        if why is None:
            try:
                return np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                why = f"unreadable ({type(exc).__name__})"
        if why != "missing":
            log.warning("decoded-image cache %s: %s; rebuilding it", path, why)
        remove_dead_temporaries(folder, os.path.basename(path))
        images = build()
        atomic_write_with(path, lambda fh: np.save(fh, images, allow_pickle=False))
        meta = {"key": key, "stamp": stamp, "bytes": os.path.getsize(path), "crc": file_crc(path),
                "shape": list(images.shape)}
        atomic_write(_meta_path(path), json.dumps(meta, indent=1))
        return np.load(path, mmap_mode="r", allow_pickle=False)
