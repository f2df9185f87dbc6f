"""Where samples come from: arrays in memory, image files, or a torchvision dataset.

A source knows its labels (and optional group labels) without decoding anything, so splits are
cheap; ``sample(i)`` returns one raw sample (a PIL image or a uint8 array for images), which the
backbone's preprocessing turns into model input.
"""

from typing import List, Optional, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from tl_lightning.batch import NO_GROUP, sample
from tl_lightning.errors import DataError


class ArraySource:
    def __init__(self, images: np.ndarray, targets: np.ndarray, origin: str):
        self.images = images  # uint8, N x H x W or N x H x W x C
        self.targets = np.asarray(targets, dtype=np.int64)
        self.origin = origin

    def __len__(self):
        return len(self.targets)

    def sample(self, i: int):
        return self.images[i]


class FileSource:
    decodes_files = True  # reading a sample decodes a file (data.cache=auto caches it)

    def __init__(self, paths: Sequence[str], targets: Sequence[int], origin: str):
        self.paths = list(paths)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.origin = origin

    def __len__(self):
        return len(self.targets)

    def sample(self, i: int):
        path = self.paths[i]
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (OSError, UnidentifiedImageError, SyntaxError) as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None

    def content_sizes(self) -> List[int]:
        import os

        return [os.path.getsize(p) for p in self.paths]

    def content_keys(self, sizes: Sequence[int], shared_sizes) -> List[Optional[str]]:
        """A digest of each file's bytes (``sizes``: this source's ``content_sizes``) where its size is shared with
        another file (``shared_sizes``: size -> count over every source), None for the rest: a file of a unique size
        has no exact duplicate, so finding duplicates reads only the candidates."""
        import hashlib

        keys: List[Optional[str]] = []
        for path, size in zip(self.paths, sizes):
            if shared_sizes[size] < 2:
                keys.append(None)
                continue
            digest = hashlib.sha1()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):  # noqa: B023 (fh is the file of this iteration)
                    digest.update(block)
            keys.append(f"{size}:{digest.hexdigest()}")
        return keys

    def name(self, i: int) -> str:
        return self.paths[i]

    def verify(self, indices: Sequence[int]) -> None:
        """Open and check each file once, so a corrupt image fails at start-up, not mid-epoch."""
        for i in indices:
            path = self.paths[i]
            try:
                with Image.open(path) as img:
                    img.verify()
                with Image.open(path) as img:
                    img.load()
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
                raise DataError(f"corrupt or unreadable image {path}: {str(exc).splitlines()[0]}") from None


class TorchvisionSource:
    decodes_files = True  # files (Food-101, Flowers-102) or small arrays made PIL images and resized

    def __init__(self, dataset, targets: Sequence[int], origin: str):
        self.dataset = dataset
        self.targets = np.asarray(targets, dtype=np.int64)
        self.origin = origin

    def __len__(self):
        return len(self.targets)

    def sample(self, i: int):
        return self.dataset[i][0]


class SplitDataset(Dataset):
    """A view of a source: chosen indices, remapped labels, and a transform; items in the batch shape."""

    def __init__(self, source, indices: np.ndarray, label_map: np.ndarray, transform):
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.label_map = label_map
        self.transform = transform
        self.groups: Optional[np.ndarray] = getattr(source, "groups", None)  # a source may set a group per sample

    def __len__(self):
        return len(self.indices)

    @property
    def targets(self) -> np.ndarray:
        return self.label_map[self.source.targets[self.indices]]

    @property
    def sample_groups(self) -> Optional[np.ndarray]:
        """The group of each sample of this split (None when the data has no groups)."""
        return None if self.groups is None else self.groups[self.indices]

    def with_transform(self, transform, indices: Optional[np.ndarray] = None) -> "SplitDataset":
        return SplitDataset(self.source, self.indices if indices is None else indices, self.label_map, transform)

    def __getitem__(self, k: int):
        i = int(self.indices[k])
        group = int(self.groups[i]) if self.groups is not None else NO_GROUP
        return sample(self.transform(self.source.sample(i)), int(self.label_map[self.source.targets[i]]), i, group)


def class_counts(targets: np.ndarray, num_classes: int) -> List[int]:
    return np.bincount(targets, minlength=num_classes).tolist()
