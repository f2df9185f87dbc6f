"""What tests share: tiny run arguments, runs in a subprocess or in-process, builders of test data on disk, a tiny
backbone."""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

# Tiny, fast defaults for end-to-end runs: 32 px synthetic data, random-init resnet18, CSV logging.

def tiny(data="synthetic"):
    base = ["backbone=resnet18", "backbone.pretrained=false", f"data={data}", "data.image_size=32",
            "data.batch_size=8", "trainer.max_epochs=2", "logger=csv", "callbacks.rich_progress_bar.enabled=false"]
    return base + (["data.per_class=12"] if data == "synthetic" else [])


TINY = tiny()


# The suite runs on 2 pytest-xdist workers (pyproject addopts); one torch thread per process keeps
# two concurrent runs from oversubscribing 2 cores (OpenMP spin-waits make that many times slower).
TEST_ENV = {"TL_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def run_train(args, run_dir, env=None, timeout=600):
    """Run `python train.py` in a subprocess; return CompletedProcess."""
    full_env = {**os.environ, **TEST_ENV, **(env or {})}
    cmd = [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def run_multirun(args, sweep_dir, env=None, timeout=900):
    """Run `python train.py -m` into ``sweep_dir``; return CompletedProcess."""
    full_env = {**os.environ, **TEST_ENV, **(env or {})}
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", f"hydra.sweep.dir={sweep_dir}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def train_inprocess(args, run_dir):
    """Compose, validate and run in this process, as train.py does; returns (metrics, summary)."""
    from tl_lightning.compose import compose_config
    from tl_lightning.run import train

    cfg = compose_config(args, str(run_dir))
    return train(cfg, str(run_dir))


def one_line(exc: BaseException, *fragments) -> str:
    """The error's message is one line holding every fragment; returns it."""
    message = str(exc)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def expect_user_error(args, run_dir, *fragments) -> str:
    """The run stops with one of the project's error types (train.py prints it as its one line, exit 2)."""
    from tl_lightning.errors import TLError

    with pytest.raises(TLError) as info:
        train_inprocess(args, run_dir)
    return one_line(info.value, *fragments)


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


def tiny_backbone(width: int = 8):
    """A ResNet-shaped backbone small enough for strategy logic: its layer groups are ResNet's (stem, layer1 ..
    layer4, each two blocks of conv1/bn1/conv2/bn2), so freezing, unfreezing, BatchNorm policies and per-group learning
    rates act as on the real one in a fraction of the time."""
    from torch import nn

    from tl_lightning.backbones.base import Backbone, group_by_patterns
    from tl_lightning.backbones.preprocessing import InputSpec

    class Block(nn.Module):  # ResNet's BasicBlock without the shortcut: conv1, bn1, conv2, bn2
        def __init__(self, c_in, c_out):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)
            self.conv2, self.bn2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)

        def forward(self, x):
            return self.bn2(self.conv2(self.bn1(self.conv1(x)).relu())).relu()

    def block(c_in, c_out):
        return nn.Sequential(Block(c_in, c_out), Block(c_out, c_out))

    class TinyResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
            self.layer1, self.layer2 = block(width, width), block(width, width)
            self.layer3, self.layer4 = block(width, 2 * width), block(2 * width, 2 * width)

        def forward(self, x):
            x = self.bn1(self.conv1(x)).relu()
            return self.layer4(self.layer3(self.layer2(self.layer1(x)))).mean((2, 3))

    model = TinyResNet()
    patterns = [("stem", r"(conv1|bn1)\."), *((f"layer{i}", rf"layer{i}\.") for i in range(1, 5))]
    backbone = Backbone(model, 2 * width, InputSpec(32, (0.5,) * 3, (0.5,) * 3), group_by_patterns(model, patterns),
                        "tiny_resnet")
    backbone.arch = {"kind": "test", "name": "tiny_resnet"}
    return backbone
