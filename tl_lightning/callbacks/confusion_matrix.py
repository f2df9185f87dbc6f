"""Render the confusion matrix as a picture, save it in the run dir and send it to the loggers."""

import os

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger


class ConfusionMatrixPlot(L.Callback):
    def __init__(self, output_dir: str):
        self.output_dir = output_dir

    def _render(self, trainer: L.Trainer, module, stage: str) -> None:
        if trainer.sanity_checking:
            return
        # callbacks' epoch-end hooks run before the module's, which resets the metrics
        metric = getattr(module, f"{stage}_metrics").confusion
        matrix = metric.compute().cpu()  # synced across ranks: every rank must call it
        if not trainer.is_global_zero:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = metric.plot(val=matrix, labels=module.class_names)
        ax.set_title(f"{stage} confusion matrix (epoch {trainer.current_epoch})")
        fig.set_size_inches(max(5, 0.6 * len(module.class_names) + 2), max(5, 0.6 * len(module.class_names) + 2))
        os.makedirs(self.output_dir, exist_ok=True)
        fig.savefig(os.path.join(self.output_dir, f"confusion_{stage}.png"), dpi=80)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=f"{stage}/confusion_matrix", images=[fig], step=trainer.global_step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(f"{stage}/confusion_matrix", fig, global_step=trainer.global_step)
        plt.close(fig)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._render(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._render(trainer, pl_module, "test")
