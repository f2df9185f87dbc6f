"""Fashion-MNIST-M: Fashion-MNIST blended with crops of real colour photographs, a domain-shift benchmark built
offline in the manner of Ganin and Lempitsky's MNIST-M (2015): each image is |photo patch - garment|, per colour
channel, with a 28 x 28 patch of a photograph at a random position and scale.

The photographs are the ones scikit-learn (china.jpg, flower.jpg) and matplotlib (grace_hopper.jpg) ship, so the
data needs nothing beyond the installed packages and the Fashion-MNIST IDX files (tl_lightning/data/fashion_mnist.py).
``data.blend_seed`` fixes which patch each image gets (the dataset itself, the same for every run; the split
follows data.seed as for every dataset). Classes, splits and sizes are Fashion-MNIST's.
"""

import os
from functools import lru_cache
from typing import List

import numpy as np
from PIL import Image

from tl_lightning.data.base import RawData
from tl_lightning.data.fashion_mnist import FashionMNISTDataModule
from tl_lightning.data.sources import ArraySource
from tl_lightning.errors import DataError
from tl_lightning.registry import DATAMODULES

SCALES = (1.0, 0.5, 0.25)  # a photo at these sizes: coarse to fine texture in a 28 px patch


def photograph_paths() -> List[str]:
    import matplotlib
    import sklearn.datasets

    images = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    return [os.path.join(images, "china.jpg"), os.path.join(images, "flower.jpg"),
            os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")]


@lru_cache(maxsize=1)
def photographs() -> List[np.ndarray]:
    """Every photograph at every scale, RGB uint8."""
    out = []
    for path in photograph_paths():
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
                for scale in SCALES:
                    size = (max(28, int(rgb.width * scale)), max(28, int(rgb.height * scale)))
                    out.append(np.asarray(rgb.resize(size, Image.BILINEAR)))
        except OSError as exc:
            raise DataError(f"Fashion-MNIST-M's background photograph {path} cannot be read: {exc}") from None
    return out


class BlendedSource(ArraySource):
    """Grayscale images blended with photo patches: sample i's patch comes from (blend_seed, part, i) alone."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, origin: str, blend_seed: int, part: int):
        super().__init__(images, targets, origin)
        self.blend_seed, self.part = blend_seed, part

    def sample(self, i: int) -> np.ndarray:
        rng = np.random.default_rng((self.blend_seed, self.part, int(i)))
        photos = photographs()
        photo = photos[int(rng.integers(len(photos)))]
        h, w = self.images.shape[1:3]
        top, left = int(rng.integers(photo.shape[0] - h + 1)), int(rng.integers(photo.shape[1] - w + 1))
        patch = photo[top:top + h, left:left + w].astype(np.int16)
        return np.abs(patch - self.images[i][..., None].astype(np.int16)).astype(np.uint8)


@DATAMODULES.register()
class FashionMNISTMDataModule(FashionMNISTDataModule):
    name = "fashion_mnist_m"

    def load(self) -> RawData:
        raw = super().load()
        seed = self.cfg.blend_seed
        train, test = raw.train, raw.test
        return RawData(
            train=BlendedSource(train.images, train.targets, f"{train.origin} blended", seed, 0),
            test=BlendedSource(test.images, test.targets, f"{test.origin} blended", seed, 1),
            class_names=raw.class_names,
        )
