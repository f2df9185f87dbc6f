"""Resume and requeue: which checkpoint a run continues from, and the run a Slurm requeue saves."""

import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Dict, Optional

import lightning as L

from tl_lightning.atomic import remove_stale_temporaries
from tl_lightning.context import RunLayout
from tl_lightning.errors import ConfigError, WeightsError, check_file
from tl_lightning.inference import read_checkpoint
from tl_lightning.rundir import resume_candidates

log = logging.getLogger(__name__)


def resolve_resume(resume: Optional[str], output_dir: str) -> Optional[str]:
    """resume=null: start fresh; auto: the run dir's newest readable last.ckpt / hpc_ckpt_N.ckpt if any; or a path."""
    if resume is None:
        return None
    if resume == "auto":
        ckpt_dir = RunLayout(output_dir).checkpoint_dir
        if os.path.isdir(ckpt_dir):
            remove_stale_temporaries(ckpt_dir)
        candidates = resume_candidates(output_dir)  # the newest one that loads
        unreadable = []
        for path in sorted(candidates, key=os.path.getmtime, reverse=True):
            try:
                _check_resumable(path)
            except WeightsError as exc:
                log.warning("resume=auto: skipping %s", str(exc).split(": ", 1)[-1])
                unreadable.append(path)
                continue
            log.info("resume=auto: resuming from %s", path)
            return path
        if unreadable:
            raise WeightsError(f"resume=auto: no checkpoint in {output_dir} can be read ({', '.join(unreadable)}); "
                               "move them away to start this run over, or resume=<path> another checkpoint")
        log.info("resume=auto: no checkpoint in %s yet; starting fresh", output_dir)
        return None
    check_file(resume, "resume")
    _check_resumable(resume)
    return resume


def _check_resumable(path: str) -> None:

    if "optimizer_states" not in read_checkpoint(path, "resume"):
        raise ConfigError(f"resume: {path} holds weights only (best.ckpt), not the optimizer and loop state a resume "
                          "needs; resume from that run's checkpoints/last.ckpt, or start a new run from it with "
                          "backbone=checkpoint backbone.path=...")


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

    def save_on_signal(self) -> str:
        """Write last.ckpt of the run in progress (rank 0) and say what the requeued job resumes from. With
        several ranks a save would wait for the others at a barrier, and during fit's validation the loops are
        between epochs: then the last completed epoch's last.ckpt is the resume point."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit" or trainer.sanity_checking:
            return "no run in progress; nothing to save"
        if trainer.world_size > 1 or not trainer.training:
            why = f"{trainer.world_size} ranks" if trainer.world_size > 1 else "in validation"
            return f"{why}: the job resumes from {self.last_path} of the last completed epoch"
        trainer.save_checkpoint(self.last_path, weights_only=False)
        log.info("saved %s before requeue", self.last_path)
        return f"saved {self.last_path}"


RUN_IN_PROGRESS = RunInProgress()


class StartRecorder(L.Callback):
    """Records the epoch and global step fit started from (> 0 after a resume)."""

    def __init__(self):
        self.at: Dict[str, int] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.at = {"epoch": trainer.current_epoch, "global_step": trainer.global_step}
        if trainer.global_step:
            log.info("resumed at epoch %d, global step %d", trainer.current_epoch, trainer.global_step)


class GracefulStop(L.Callback):
    """Ctrl-C or SIGTERM during fit: stop at the end of the current batch, save last.ckpt there (one process;
    with several ranks the last epoch's last.ckpt is the resume point), and let ``run.train`` raise
    ``Interrupted`` (exit 130 / 143). Lightning turns SIGTERM into ``SIGTERMException`` once a batch is complete
    (its loop counters consistent, so the resume neither repeats nor skips a step); a first Ctrl-C is routed
    the same way, a second one stops at once."""

    def __init__(self, last_path: str):
        self.last_path = last_path
        self.signal_name = ""
        self.saved = ""
        self._sigint_pending = False
        self._previous = None
        self._trainer = None

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.world_size == 1 and threading.current_thread() is threading.main_thread():
            self._trainer = trainer
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame) -> None:
        if self._sigint_pending:  # a second Ctrl-C: stop now, without a checkpoint of this point
            self._restore()
            raise KeyboardInterrupt
        self._sigint_pending = True
        self._trainer._signal_connector.received_sigterm = True  # Lightning stops after the batch, as for SIGTERM
        print("\nCtrl-C: stopping after this batch and saving last.ckpt (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        self._restore()
        if isinstance(exception, SIGTERMException):
            self.signal_name = "SIGINT" if self._sigint_pending else "SIGTERM"
        elif isinstance(exception, KeyboardInterrupt):
            self.signal_name = "SIGINT"  # the second Ctrl-C: no checkpoint of this point
        else:
            return
        if trainer.world_size == 1 and isinstance(exception, SIGTERMException) and trainer.training:
            trainer.save_checkpoint(self.last_path, weights_only=False)
            self.saved = self.last_path
        elif os.path.isfile(self.last_path):
            self.saved = self.last_path + " (from the last completed epoch)"
