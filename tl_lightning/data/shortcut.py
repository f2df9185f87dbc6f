"""``data.shortcut``: a built-in spurious-correlation benchmark for any image dataset.

Each sample gets a colour (one per class): ``kind=tint`` multiplies the image by it, ``kind=patch`` paints a
corner square in it. In train and val the colour is the sample's class with probability ``train_correlation``
(else one of the other classes' colours, uniformly); in test it is drawn independently of the class. A model
that reads the colour instead of the object scores well on train/val and fails at test on the samples whose
colour disagrees with their class. Groups: (class, aligned) and (class, conflicting), id ``2 * class +
conflicting``, named ``<class>/aligned`` and ``<class>/conflicting``: 2C groups.
"""

from typing import Any, Dict, List

import numpy as np
from PIL import Image

from tl_lightning.data.sources import SplitDataset

# distinct, saturated colours; more classes than colours reuse them (the shortcut then names a pair of classes)
PALETTE = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40), (128, 0, 0), (0, 0, 128),
], dtype=np.float32)


def group_names(class_names: List[str]) -> List[str]:
    return [f"{c}/{kind}" for c in class_names for kind in ("aligned", "conflicting")]


def draw_colours(labels: np.ndarray, num_classes: int, correlation: float, seed: int) -> np.ndarray:
    """One colour index per sample: its label with probability ``correlation``, else another class's, uniformly;
    ``correlation=None``: independent of the label (uniform over the classes)."""
    rng = np.random.default_rng(seed)
    if correlation is None:
        return rng.integers(0, num_classes, len(labels))
    others = (labels + rng.integers(1, num_classes, len(labels))) % num_classes
    return np.where(rng.random(len(labels)) < correlation, labels, others)


class ShortcutSource:
    """A view of one split's source whose samples carry their colour; ``groups`` per source index."""

    def __init__(self, source, indices: np.ndarray, labels: np.ndarray, colours: np.ndarray, kind: str):
        self.source, self.kind = source, kind
        self.targets, self.origin = source.targets, f"{source.origin} (data.shortcut.kind={kind})"
        self.colour = np.full(len(source), -1, dtype=np.int64)
        self.colour[indices] = colours
        self.groups = np.full(len(source), -1, dtype=np.int64)
        self.groups[indices] = 2 * labels + (colours != labels)

    def __len__(self) -> int:
        return len(self.source)

    def name(self, i: int) -> str:
        return self.source.name(i) if hasattr(self.source, "name") else str(i)

    def sample(self, i: int):
        image = self.source.sample(i)
        pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        colour = PALETTE[self.colour[i] % len(PALETTE)]
        if self.kind == "tint":
            pixels = pixels * (colour / 255.0)
        else:
            side = max(3, min(pixels.shape[:2]) // 5)
            pixels = pixels.copy()
            pixels[:side, :side] = colour
        return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def apply_shortcut(datasets: Dict[str, Any], cfg, num_classes: int, seed: int) -> Dict[str, Any]:
    """Wrap each split's source (train and val correlated, test independent); returns the summary's record."""

    record: Dict[str, Any] = {"kind": cfg.kind, "train_correlation": cfg.train_correlation, "aligned_share": {}}
    for k, (split, ds) in enumerate(sorted(datasets.items())):
        labels = ds.targets
        correlation = None if split == "test" else cfg.train_correlation
        colours = draw_colours(labels, num_classes, correlation, seed=seed * 1_000 + 11 + k)
        source = ShortcutSource(ds.source, ds.indices, labels, colours, cfg.kind)
        datasets[split] = SplitDataset(source, ds.indices, ds.label_map, ds.transform)
        record["aligned_share"][split] = round(float(np.mean(colours == labels)), 4) if len(labels) else None
    return record


def group_counts(datasets: Dict[str, Any], num_groups: int) -> Dict[str, List[int]]:
    """Samples per group in each split (samples without a group, -1, are not counted)."""
    out = {}
    for split, ds in datasets.items():
        groups = ds.sample_groups if ds.sample_groups is not None else np.array([], dtype=np.int64)
        out[split] = np.bincount(groups[groups >= 0], minlength=num_groups).tolist()
    return out
