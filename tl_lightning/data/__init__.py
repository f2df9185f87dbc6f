from tl_lightning.data.base import TransferDataModule
from tl_lightning.data.registry import build_datamodule

__all__ = ["TransferDataModule", "build_datamodule"]
