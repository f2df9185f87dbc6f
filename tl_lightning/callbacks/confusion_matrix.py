"""Render confusion matrices as pictures, save them in the run dir and send them to the loggers.

The val matrix is kept after every validation epoch (a small tensor) but drawn once,
when fitting ends, so plotting does not slow the epochs; the test matrix is drawn
when testing ends.
"""

import os

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger


class ConfusionMatrixPlot(L.Callback):
    def __init__(self, run_dir: str):
        self.output_dir = run_dir
        self.last_val = None

    @staticmethod
    def _compute(module, stage: str):
        # callbacks' epoch-end hooks run before the module's, which resets the metrics;
        # compute() syncs across ranks, so every rank calls it
        return getattr(module, f"{stage}_metrics").confusion.compute().cpu()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.last_val = (self._compute(pl_module, "val"), trainer.current_epoch)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.last_val is not None:
            self._draw(trainer, pl_module, "val", *self.last_val)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._draw(trainer, pl_module, "test", self._compute(pl_module, "test"), trainer.current_epoch)

    def _draw(self, trainer, module, stage: str, matrix, epoch: int) -> None:
        if not trainer.is_global_zero:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = getattr(module, f"{stage}_metrics").confusion.plot(val=matrix, labels=module.class_names)
        side = max(5, 0.6 * len(module.class_names) + 2)
        fig.set_size_inches(side, side)
        ax.set_title(f"{stage} confusion matrix (epoch {epoch})")
        os.makedirs(self.output_dir, exist_ok=True)
        fig.savefig(os.path.join(self.output_dir, f"confusion_{stage}.png"), dpi=80)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=f"{stage}/confusion_matrix", images=[fig])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(f"{stage}/confusion_matrix", fig, global_step=trainer.global_step)
        plt.close(fig)
