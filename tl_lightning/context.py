"""What the run hands to the parts it assembles, instead of setting attributes on them from outside.

- ``DataPaths``: where datamodules download (``paths.data_dir``) and cache (``paths.cache_dir``: tokenised
  texts, cached features); every datamodule gets one when it is built.
- ``RunLayout``: the run dir's layout, named here only (checkpoints/, best.ckpt, last.ckpt, summary.json ...).
- ``RunContext``: what strategies and callbacks may need from the run: the paths, the layout, the target
  datamodule (set up, unwrapped) and the source task of ``backbone=checkpoint`` (None otherwise).

Nothing here imports torch: the config check and the run-dir tools read the layout.
"""

import os
from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class DataPaths:
    data_dir: str = "data"  # downloads (data.download=true) when a data option names no root
    cache_dir: Optional[str] = None  # tokenised splits and cached features; None: no cache

    @classmethod
    def of(cls, paths_cfg) -> "DataPaths":
        """From a config's ``paths`` node (paths.data_dir, paths.cache_dir)."""
        return cls(paths_cfg.data_dir, paths_cfg.cache_dir)


DEFAULT_PATHS = DataPaths()  # downloads under ./data, no cache: what a datamodule built without a run gets


@dataclass(frozen=True)
class RunLayout:
    """Where a run keeps what it writes, relative to its run dir."""

    run_dir: str
    CHECKPOINTS = "checkpoints"
    BEST = "best"  # checkpoint file names without .ckpt (Lightning's ModelCheckpoint filename)
    LAST = "last"
    SUMMARY = "summary.json"
    CONFIG = "config_resolved.yaml"

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.run_dir, self.CHECKPOINTS)

    @property
    def last_checkpoint(self) -> str:
        return os.path.join(self.checkpoint_dir, f"{self.LAST}.ckpt")

    @property
    def best_checkpoint(self) -> str:
        return os.path.join(self.checkpoint_dir, f"{self.BEST}.ckpt")

    @property
    def summary(self) -> str:
        return os.path.join(self.run_dir, self.SUMMARY)

    @property
    def config(self) -> str:
        return os.path.join(self.run_dir, self.CONFIG)

    @staticmethod
    def of_checkpoint(ckpt_path: str) -> str:
        """The run dir a checkpoint belongs to (its folder's parent when the folder is checkpoints/)."""
        folder = os.path.dirname(os.path.abspath(ckpt_path))
        return os.path.dirname(folder) if os.path.basename(folder) == RunLayout.CHECKPOINTS else folder


@dataclass(frozen=True)
class RunContext:
    """Handed to strategies (constructor) and datamodule-dependent parts; read-only."""

    paths: DataPaths
    layout: RunLayout
    datamodule: Any = None  # the target datamodule, set up (before any wrapper: features, episodes)
    source: Any = None  # tl_lightning.inference.SourceTask of backbone=checkpoint, or None
    eval_batch_size: int = 64  # data.eval_batch_size (or batch_size): what evaluation passes use
