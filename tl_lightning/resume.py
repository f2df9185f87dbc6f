"""Resume and requeue: which checkpoint a run continues from, and the run a Slurm requeue saves."""

import glob
import logging
import os
from contextlib import contextmanager
from typing import Dict, Optional

import lightning as L

from tl_lightning.errors import ConfigError

log = logging.getLogger(__name__)


def resolve_resume(resume: Optional[str], output_dir: str) -> Optional[str]:
    """resume=null: start fresh; auto: the run dir's newest last.ckpt / hpc_ckpt_N.ckpt if any; or a path."""
    if resume is None:
        return None
    if resume == "auto":
        # last.ckpt (every epoch, or when submitit requeues) or Lightning's hpc_ckpt_N.ckpt (its own SLURM
        # requeue in a plain sbatch job), whichever is newer
        candidates = [p for p in [os.path.join(output_dir, "checkpoints", "last.ckpt"),
                                  *glob.glob(os.path.join(output_dir, "hpc_ckpt_*.ckpt"))] if os.path.isfile(p)]
        if candidates:
            newest = max(candidates, key=os.path.getmtime)
            log.info("resume=auto: resuming from %s", newest)
            return newest
        log.info("resume=auto: no checkpoint in %s yet; starting fresh", output_dir)
        return None
    if not os.path.isfile(resume):
        raise ConfigError(f"resume: no such checkpoint file: {resume} (use resume=auto or a .ckpt path)")
    if "optimizer_states" not in _read(resume):
        raise ConfigError(f"resume: {resume} holds weights only (best.ckpt), not the optimizer and loop state a resume "
                          "needs; resume from that run's checkpoints/last.ckpt, or start a new run from it with "
                          "backbone=checkpoint backbone.path=...")
    return resume


def _read(path: str) -> dict:
    import torch

    from tl_lightning.errors import WeightsError

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign
        raise WeightsError(f"resume: cannot read {path} as a checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict):
        raise WeightsError(f"resume: {path} is not a Lightning checkpoint")
    return ckpt


class RunInProgress:
    """The trainer of the run this process is fitting, if any.

    Submitit calls the Slurm launcher's ``checkpoint()`` from its signal handler, outside the task
    function, when Slurm announces preemption or the time limit; that hook reaches the run only
    through this one object (``RUN_IN_PROGRESS``), which ``run.train`` fills while it fits.
    """

    def __init__(self):
        self.trainer: Optional[L.Trainer] = None
        self.last_path = ""

    @contextmanager
    def tracking(self, trainer: L.Trainer, last_path: str):
        self.trainer, self.last_path = trainer, last_path
        try:
            yield
        finally:
            self.trainer, self.last_path = None, ""

    def save_on_signal(self) -> Optional[str]:
        """Write last.ckpt of the run in progress (rank 0). With several ranks a save would wait for the
        others at a barrier, so the run resumes from the last epoch's last.ckpt instead."""
        trainer = self.trainer
        if trainer is None or trainer.state.stage is None or not trainer.training:
            return None
        if trainer.world_size > 1:
            log.warning("requeue with %d ranks: resuming from the last epoch's last.ckpt", trainer.world_size)
            return None
        trainer.save_checkpoint(self.last_path)
        log.info("saved %s before requeue", self.last_path)
        return self.last_path


RUN_IN_PROGRESS = RunInProgress()


class StartRecorder(L.Callback):
    """Records the epoch and global step fit started from (> 0 after a resume)."""

    def __init__(self):
        self.at: Dict[str, int] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.at = {"epoch": trainer.current_epoch, "global_step": trainer.global_step}
        if trainer.global_step:
            log.info("resumed at epoch %d, global step %d", trainer.current_epoch, trainer.global_step)
