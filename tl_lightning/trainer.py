"""The Lightning Trainer from the ``trainer`` group, the two model switches it carries, and its checkpoint IO."""

import dataclasses
import logging
import os
from typing import Any, Callable, Dict, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from tl_lightning.atomic import atomic_torch_save
from tl_lightning.config.schema import MODEL_SWITCHES, TrainerConf

log = logging.getLogger(__name__)


def trainer_kwargs(cfg: DictConfig) -> Dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    # null means "Lightning's default" where the schema's default is null, and is passed on where the user set a
    # key to null against a default of the schema's (check_val_every_n_epoch=null: validate by steps alone)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainerConf)}
    kwargs = {k: v for k, v in kwargs.items()
              if (v is not None or defaults.get(k) is not None) and k not in MODEL_SWITCHES}
    if kwargs.get("precision") == "bf16-mixed" and kwargs.get("accelerator") in ("gpu", "cuda") \
            and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        log.warning("this GPU has no bf16; using precision=16-mixed instead")
        kwargs["precision"] = "16-mixed"
    return kwargs


def cluster_plugins() -> list:
    """Under hydra/launcher=slurm submitit owns requeue (USR2 -> checkpoint -> requeue); Lightning's own SLURM
    auto-requeue (USR1) is switched off so the two never fight. A plain sbatch job keeps Lightning's."""
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and "SLURM_JOB_ID" in os.environ:
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        return [SLURMEnvironment(auto_requeue=False)]
    return []


def apply_model_switches(module, trainer_cfg) -> None:
    """channels_last and torch.compile, from the trainer group."""
    if trainer_cfg.channels_last:
        module.use_channels_last()
    if trainer_cfg.compile:
        module.backbone.model.compile(backend="inductor" if trainer_cfg.compile is True else trainer_cfg.compile)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic saves in the checkpoint's own folder (Lightning's default writes
    through a temporary file in /tmp and moves it, which is not atomic across filesystems), and loads that
    accept only tensors and plain containers (``weights_only=True``)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Optional[Any] = None) -> None:
        atomic_torch_save(checkpoint, str(path))

    def load_checkpoint(self, path, map_location: Optional[Callable] = lambda storage, loc: storage,
                        weights_only: Optional[bool] = None) -> dict:
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)
