"""Small builders of test data on disk."""

import gzip
import os

import numpy as np
from PIL import Image


def write_idx(path, array: np.ndarray) -> None:
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.tobytes())


def write_fashion_root(root, n_train=60, n_test=20, num_classes=10, bad_label=None) -> str:
    rng = np.random.default_rng(0)
    os.makedirs(root, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % num_classes
        if bad_label is not None and split == "train":
            labels[3] = bad_label
        write_idx(os.path.join(root, f"{split}-images-idx3-ubyte.gz"), rng.integers(0, 255, (n, 28, 28)))
        write_idx(os.path.join(root, f"{split}-labels-idx1-ubyte.gz"), labels)
    return str(root)


def write_image_tree(root, classes=("cat", "dog"), per_class=6, size=12, seed=0) -> str:
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(60 + 120 * c, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, name, f"{i}.png"))
    return str(root)


# the smallest file a checkpoint path check accepts (a complete zip archive, as torch.save writes)
EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18
