"""Datasets by name: each datamodule registers itself in its own file (``@DATAMODULES.register()``)."""

from tl_lightning.context import DEFAULT_PATHS, DataPaths
from tl_lightning.data.base import TransferDataModule
from tl_lightning.registry import DATAMODULES


def build_datamodule(cfg, preprocessing, paths: DataPaths = DEFAULT_PATHS) -> TransferDataModule:
    """The datamodule of ``cfg.name``, feeding a backbone with this ``preprocessing``; ``paths``: where downloads
    and caches go (a plain string: the download folder, no cache)."""
    if isinstance(paths, str):
        paths = DataPaths(data_dir=paths)
    return DATAMODULES.get(cfg.name)(cfg, preprocessing, paths)
