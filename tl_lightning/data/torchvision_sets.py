"""torchvision's classification datasets by name, with its download code behind a reachability probe."""

import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np

from tl_lightning.backbones.weights import host_reachable
from tl_lightning.context import DEFAULT_PATHS, DataPaths
from tl_lightning.data.base import RawData, TransferDataModule
from tl_lightning.data.sources import TorchvisionSource
from tl_lightning.errors import DataError
from tl_lightning.registry import DATAMODULES


@dataclass(frozen=True)
class TorchvisionSet:
    cls: str
    train: dict  # constructor kwargs of the training pool
    test: dict
    val: Optional[dict] = None
    url: str = ""  # probed before a download, so an offline machine fails fast
    targets: Callable = lambda ds: ds.targets


def _labels(ds):
    return ds._labels


SETS: Dict[str, TorchvisionSet] = {
    "cifar10": TorchvisionSet("CIFAR10", {"train": True}, {"train": False}, url="https://www.cs.toronto.edu"),
    "cifar100": TorchvisionSet("CIFAR100", {"train": True}, {"train": False}, url="https://www.cs.toronto.edu"),
    "flowers102": TorchvisionSet("Flowers102", {"split": "train"}, {"split": "test"}, val={"split": "val"},
                                 url="https://thor.robots.ox.ac.uk", targets=_labels),
    "oxford_iiit_pet": TorchvisionSet("OxfordIIITPet", {"split": "trainval"}, {"split": "test"},
                                      url="https://thor.robots.ox.ac.uk", targets=_labels),
    "food101": TorchvisionSet("Food101", {"split": "train"}, {"split": "test"},
                              url="https://data.vision.ee.ethz.ch", targets=_labels),
}


def download_torchvision(cls_name: str, root: str, url: str = "https://github.com", **kwargs):
    import torchvision

    if not host_reachable(url):
        raise DataError(f"data.download=true but {url} is unreachable (offline?); download {cls_name} on a machine "
                        f"with internet into {root} and pass data.root={root}")
    os.makedirs(root, exist_ok=True)
    return getattr(torchvision.datasets, cls_name)(root, download=True, **kwargs)


class TorchvisionDataModule(TransferDataModule):
    def __init__(self, cfg, preprocessing, paths: DataPaths = DEFAULT_PATHS):
        super().__init__(cfg, preprocessing, paths)
        self.name = cfg.name
        self.spec = SETS[cfg.name]

    @property
    def root(self) -> str:
        return self.cfg.root or self.download_dir

    def prepare_data(self) -> None:
        if self.cfg.download:
            for kwargs in filter(None, (self.spec.train, self.spec.val, self.spec.test)):
                download_torchvision(self.spec.cls, self.root, self.spec.url, **kwargs)

    def _open(self, kwargs: dict) -> TorchvisionSource:
        import torchvision

        try:
            ds = getattr(torchvision.datasets, self.spec.cls)(self.root, download=False, **kwargs)
        except RuntimeError as exc:
            raise DataError(f"data={self.name}: no usable copy under {self.root} ({str(exc).splitlines()[0]}); "
                            f"pass data.download=true (needs internet) or data.root=<folder holding it>") from None
        return TorchvisionSource(ds, np.asarray(self.spec.targets(ds)), f"{self.name} {kwargs}")

    def load(self) -> RawData:
        if self.cfg.root and not os.path.isdir(self.cfg.root):
            raise DataError(f"data.root: no such directory: {self.cfg.root}")
        train = self._open(self.spec.train)
        names = list(getattr(train.dataset, "classes", []) or [str(c) for c in range(int(train.targets.max()) + 1)])
        val = self._open(self.spec.val) if self.spec.val else None
        return RawData(train=train, val=val, test=self._open(self.spec.test), class_names=names)


for _name in SETS:  # one datamodule class serves every torchvision set
    DATAMODULES.register(_name)(TorchvisionDataModule)
