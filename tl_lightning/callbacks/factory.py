"""Lightning callbacks from the ``callbacks`` config group."""

from typing import List

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar, TQDMProgressBar

from tl_lightning.callbacks.confusion_matrix import ConfusionMatrixPlot
from tl_lightning.callbacks.learning_rates import LearningRates


def build_callbacks(cfg, layout, has_logger: bool) -> List[L.Callback]:
    """``layout``: the run dir's (tl_lightning.context.RunLayout)."""
    callbacks: List[L.Callback] = []
    ckpt = cfg.model_checkpoint
    if ckpt.enabled:
        # best.ckpt: what testing, inference and backbone=checkpoint need (weights, config, class names, strategy
        # state), without the optimizer and loop state only resuming needs (last.ckpt has those): about a third
        # of the size, and a third of the write time every time the monitored metric improves
        callbacks.append(ModelCheckpoint(
            dirpath=layout.checkpoint_dir, filename=layout.BEST, monitor=ckpt.monitor, mode=ckpt.mode,
            save_top_k=ckpt.save_top_k, auto_insert_metric_name=False, save_weights_only=True))
    if ckpt.enabled and ckpt.save_last:
        # Lightning's save_last=True rewrites last.ckpt only when a best checkpoint was saved in the same
        # step; resume needs the latest state, so a second callback writes it every epoch.
        callbacks.append(ModelCheckpoint(
            dirpath=layout.checkpoint_dir, filename=layout.LAST, monitor=None, save_top_k=1,
            every_n_epochs=1, enable_version_counter=False, auto_insert_metric_name=False))
    stop = cfg.early_stopping
    if stop.enabled:
        callbacks.append(EarlyStopping(monitor=stop.monitor, mode=stop.mode, patience=stop.patience, min_delta=stop.min_delta))
    if cfg.lr_monitor.enabled and has_logger:
        callbacks.append(LearningRates(logging_interval=cfg.lr_monitor.logging_interval))
    callbacks.append(RichProgressBar() if cfg.rich_progress_bar.enabled else TQDMProgressBar())
    if cfg.confusion_matrix.enabled:
        callbacks.append(ConfusionMatrixPlot(layout.run_dir))
    fairness = cfg.get("fairness")
    if fairness is not None and fairness.enabled:
        from tl_lightning.callbacks.fairness import FairnessMonitor

        callbacks.append(FairnessMonitor(fairness.monitor, fairness.mode, fairness.max_gap, fairness.margin,
                                         fairness.patience, fairness.action, fairness.after_rollback))
    from tl_lightning.callbacks.diagnostics import CollapseWatch, PlateauWatch

    collapse, plateau = cfg.get("collapse"), cfg.get("plateau")
    if collapse is not None and collapse.enabled:
        callbacks.append(CollapseWatch(collapse.max_tv))
    if plateau is not None and plateau.enabled:
        callbacks.append(PlateauWatch(plateau.monitor, plateau.mode, plateau.patience, plateau.min_delta))
    saliency = cfg.get("saliency")
    if saliency is not None and saliency.enabled:
        from tl_lightning.callbacks.saliency import SaliencyGrid

        callbacks.append(SaliencyGrid(layout.run_dir, saliency.per_class, saliency.max_classes))
    for node in (cfg.extra or {}).values():
        if node is not None:
            callbacks.append(instantiate(node))
    return callbacks
