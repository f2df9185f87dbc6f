"""The progress display (``callbacks.rich_progress_bar``): Rich's live bar in a terminal; where stdout is not one (a
log file, CI, a Slurm job's output) one plain line per epoch, which a live bar cannot give there: it redraws in
place, so a log keeps only its last frame, with the metrics wrapped into a narrow column."""

import sys
import time
from typing import Dict

from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress import ProgressBar

from tl_lightning.terminal import metric_text


def terminal_progress_bar(interactive=None) -> ProgressBar:
    """``LiveBar`` when stdout is a terminal (``interactive=None``: ask it), ``EpochLines`` otherwise."""
    if interactive is None:
        interactive = sys.stdout.isatty()
    return LiveBar() if interactive else EpochLines()


def shown_metrics(metrics: Dict) -> Dict[str, float]:
    """What a progress display shows: epoch values under their logged names, training's first; no logger version
    (``v_num``) and no per-step loss (it jumps from batch to batch)."""
    shown = {}
    for key, value in sorted(metrics.items(), key=lambda kv: not kv[0].startswith("train/")):
        if key != "v_num" and not key.endswith("_step") and isinstance(value, (int, float)):
            shown[key.removesuffix("_epoch")] = value
    return shown


class LiveBar(RichProgressBar):
    """Rich's bar with the metrics of ``shown_metrics``, so they fit beside it on a terminal line."""

    def get_metrics(self, trainer, pl_module):
        return shown_metrics(super().get_metrics(trainer, pl_module))  # Lightning's Rich column rounds them


class EpochLines(ProgressBar):
    """``epoch 3/10  13 steps  2.9 s  train/loss 0.0982  val/loss 0.7050  val/acc 0.7970 ...`` after each epoch's
    validation (``step 50/300  ...`` after each validation instead where it goes by steps,
    trainer.check_val_every_n_epoch=null), and one line when testing ends; rank 0 only (Lightning disables progress
    bars elsewhere)."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._started = time.time()

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _line(self, text: str) -> None:
        if self._enabled:
            print(text, flush=True)

    def _metrics(self, trainer, pl_module) -> Dict[str, str]:
        return {k: metric_text(v) for k, v in shown_metrics(self.get_metrics(trainer, pl_module)).items()}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.check_val_every_n_epoch is not None or trainer.current_epoch == 0:
            self._started = time.time()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Lightning runs the epoch-end validation before this hook, so the line has the epoch's val metrics too
        if trainer.check_val_every_n_epoch is None:
            return
        metrics = "  ".join(f"{k} {v}" for k, v in self._metrics(trainer, pl_module).items())
        steps = trainer.num_training_batches
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        self._line(f"epoch {trainer.current_epoch + 1}{total}  {steps} steps  "
                   f"{time.time() - self._started:.1f} s  {metrics}".rstrip())

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.check_val_every_n_epoch is not None or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = "  ".join(f"{k} {v}" for k, v in self._metrics(trainer, pl_module).items())
        total = f"/{trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else ""
        self._line(f"step {trainer.global_step}{total}  {time.time() - self._started:.1f} s  {metrics}".rstrip())
        self._started = time.time()

    def on_test_start(self, trainer, pl_module) -> None:
        self._started = time.time()

    def on_test_end(self, trainer, pl_module) -> None:
        batches = int(sum(trainer.num_test_batches))
        self._line(f"test  {batches} batches  {time.time() - self._started:.1f} s")
