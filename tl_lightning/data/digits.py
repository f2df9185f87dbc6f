"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download)."""

from tl_lightning.data.base import RawData, TransferDataModule, to_uint8
from tl_lightning.data.sources import ArraySource
from tl_lightning.registry import DATAMODULES


@DATAMODULES.register()
class DigitsDataModule(TransferDataModule):
    name = "digits"

    def load(self) -> RawData:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = to_uint8(bunch.images, max_value=16.0)
        return RawData(train=ArraySource(images, bunch.target, "sklearn digits"),
                       class_names=[str(c) for c in bunch.target_names])
