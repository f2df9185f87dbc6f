"""Datasets by name."""

from tl_lightning.data.base import TransferDataModule
from tl_lightning.data.digits import DigitsDataModule
from tl_lightning.data.fashion_mnist import FashionMNISTDataModule
from tl_lightning.data.image_folder import ImageFolderDataModule
from tl_lightning.data.multi_source import MultiSourceDataModule
from tl_lightning.data.synthetic import SyntheticDataModule
from tl_lightning.data.text import FortunesDataModule, SyntheticTextDataModule, TextCsvDataModule, TextFolderDataModule
from tl_lightning.data.torchvision_sets import SETS, TorchvisionDataModule
from tl_lightning.errors import unknown_name

DATAMODULES = {
    "fashion_mnist": FashionMNISTDataModule,
    "digits": DigitsDataModule,
    "image_folder": ImageFolderDataModule,
    "synthetic": SyntheticDataModule,
    "multi_source": MultiSourceDataModule,
    "fortunes": FortunesDataModule,
    "text_csv": TextCsvDataModule,
    "text_folder": TextFolderDataModule,
    "synthetic_text": SyntheticTextDataModule,
    **{name: TorchvisionDataModule for name in SETS},
}


def build_datamodule(cfg, preprocessing, download_dir: str = "data") -> TransferDataModule:
    """The datamodule of ``cfg.name``, feeding a backbone with this ``preprocessing``."""
    if cfg.name not in DATAMODULES:
        raise unknown_name("dataset", cfg.name, DATAMODULES, "data.name")
    return DATAMODULES[cfg.name](cfg, preprocessing, download_dir)
