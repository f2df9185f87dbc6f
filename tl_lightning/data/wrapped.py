"""The base of every datamodule that wraps another (cached features, episodes, unlabelled target data ...).

A wrapper passes the wrapped datamodule's task description through (``task``), and answers ``unwrapped`` with
the datamodule whose samples these are, so callers never guess what a wrapper calls the one it wraps.
"""

import lightning as L


class WrappedDataModule(L.LightningDataModule):
    def __init__(self, wrapped):
        super().__init__()
        self.wrapped = wrapped  # the datamodule this one wraps (itself maybe a wrapper)
        self.task = wrapped.task
        self.class_names, self.num_classes, self.split_info = wrapped.class_names, wrapped.num_classes, wrapped.split_info

    @property
    def unwrapped(self):
        """The innermost datamodule: its config, raw splits and plain loaders."""
        return self.wrapped.unwrapped

    def val_dataloader(self):
        return self.wrapped.val_dataloader()

    def test_dataloader(self):
        return self.wrapped.test_dataloader()

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """The wrapped datamodule's loaders may serve data.cache's uint8 batches: its hook makes them model input."""
        return self.wrapped.on_after_batch_transfer(batch, dataloader_idx)
