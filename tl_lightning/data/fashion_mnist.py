"""Fashion-MNIST from IDX files: data.root, else Debian's dataset-fashion-mnist, else torchvision's download."""

import gzip
import os
from typing import Optional

import numpy as np

from tl_lightning.data.base import RawData, TransferDataModule
from tl_lightning.data.sources import ArraySource
from tl_lightning.data.torchvision_sets import download_torchvision
from tl_lightning.errors import DataError
from tl_lightning.registry import DATAMODULES

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic, dims, then unsigned bytes."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            data = bytearray(fh.read())  # writable, so tensors made from it are safe
        magic = int.from_bytes(data[0:4], "big")
        if magic >> 8 != 0x08:  # 0x08 = unsigned byte
            raise ValueError(f"magic number {magic:#x} is not an unsigned-byte IDX file")
        ndim = magic & 0xFF
        dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return array.reshape(dims)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None


def _find(directory: str, stem: str) -> Optional[str]:
    for sub in ("", "FashionMNIST/raw", "raw"):
        for suffix in ("", ".gz"):
            path = os.path.join(directory, sub, stem + suffix)
            if os.path.isfile(path):
                return path
    return None


def locate_idx_dir(root: Optional[str], download_dir: str) -> Optional[str]:
    for directory in [root] if root else [DEBIAN_DIR, download_dir]:
        if all(_find(directory, stem) for stem in FILES.values()):
            return directory
    return None


@DATAMODULES.register()
class FashionMNISTDataModule(TransferDataModule):
    name = "fashion_mnist"

    def prepare_data(self) -> None:
        if locate_idx_dir(self.cfg.root, self.download_dir) is None and self.cfg.download:
            for train in (True, False):
                download_torchvision("FashionMNIST", self.cfg.root or self.download_dir, MIRROR, train=train)

    def load(self) -> RawData:
        root = self.cfg.root
        if root and not os.path.isdir(root):
            raise DataError(f"data.root: no such directory: {root}")
        directory = locate_idx_dir(root, self.download_dir)
        if directory is None:
            where = root or DEBIAN_DIR
            raise DataError(
                f"Fashion-MNIST IDX files ({', '.join(FILES.values())}, optionally .gz) not found in {where}; "
                "install them with 'apt-get install dataset-fashion-mnist', point data.root at them, "
                "or pass data.download=true (needs internet)"
            )
        arrays = {k: read_idx(_find(directory, stem)) for k, stem in FILES.items()}
        for split in ("train", "test"):
            if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
                raise DataError(f"{directory}: {split} images and labels differ in length")
        return RawData(
            train=ArraySource(arrays["train_images"], arrays["train_labels"], f"{directory} (train)"),
            test=ArraySource(arrays["test_images"], arrays["test_labels"], f"{directory} (t10k)"),
            class_names=list(CLASS_NAMES),
        )
