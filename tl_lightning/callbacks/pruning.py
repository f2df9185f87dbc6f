"""Optuna pruning for the trials of ``hparams_search=optuna`` (``callbacks.optuna_pruning``).

The sweeper (``hydra_plugins/tl_lightning_sweeper``) gives each job its trial's number, study and storage. After
every validation the callback reports the monitored metric (``${optimized_metric}``) to the trial at that epoch;
once the trial is past ``warmup_epochs``, the pruner compares it with the other trials at the same epoch (median:
below the median of the trials that reached it, after ``startup_trials`` complete trials; hyperband: successive
halving across brackets). A pruned trial is recorded PRUNED in the study, and the run stops after that epoch: it
still tests its best checkpoint and writes its summary, with ``optuna_pruning`` saying when and at what value.

With ``pruner=none`` the epochs are still reported (the study holds every trial's curve) and nothing is pruned.
Outside such a search (no trial given) the callback is not built.
"""

import logging
from typing import Any, Dict, List, Optional

import lightning as L

from tl_lightning.callbacks.optuna_storage import open_storage

log = logging.getLogger(__name__)


def optuna_pruning(trial: Optional[int], study: Optional[str], storage: Optional[str], monitor: str, pruner: str,
                   startup_trials: int, warmup_epochs: int) -> List[L.Callback]:
    """The callback for a trial of the sweep, or none (a run outside an Optuna search)."""
    if trial is None:
        return []
    return [OptunaPruning(trial, study, storage, monitor, pruner, startup_trials, warmup_epochs)]


def build_pruner(name: str, startup_trials: int, warmup_epochs: int):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup_epochs))
    return optuna.pruners.NopPruner()  # none: every epoch reported (the study's curves), no trial pruned


class OptunaPruning(L.Callback):
    def __init__(self, trial: int, study: str, storage: str, monitor: str, pruner: str, startup_trials: int,
                 warmup_epochs: int):
        self.number, self.study_name, self.storage, self.monitor = trial, study, storage, monitor
        self.pruner = build_pruner(pruner, startup_trials, warmup_epochs)
        self.pruner_name = pruner
        self.trial = None
        self.record: Dict[str, Any] = {"trial": trial, "pruner": pruner, "pruned": False}

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or self.trial is not None or trainer.global_rank != 0:
            return
        import optuna

        study = optuna.load_study(study_name=self.study_name, storage=open_storage(self.storage), pruner=self.pruner)
        frozen = next((t for t in study.get_trials(deepcopy=False) if t.number == self.number), None)
        if frozen is None:
            from tl_lightning.errors import ConfigError

            raise ConfigError(f"callbacks.optuna_pruning.trial={self.number}: study '{self.study_name}' in "
                              f"{self.storage} has no such trial (the sweeper sets these; leave them unset)")
        # Optuna's Trial is built from the storage's trial id (FrozenTrial keeps it as _trial_id): the job reports
        # to the trial the sweeper asked for, in its own process
        self.study, self.trial = study, optuna.trial.Trial(study, frozen._trial_id)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.record["pruned"]:
            return
        prune = self._report(trainer) if self.trial is not None else False
        if trainer.world_size > 1:  # rank 0 talks to the study; every rank stops together
            prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            trainer.should_stop = True

    def _report(self, trainer) -> bool:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return False
        epoch, value = trainer.current_epoch, float(value)
        self.trial.report(value, epoch)
        self.record["reported_epochs"] = epoch + 1
        if not self.trial.should_prune():
            return False
        from optuna.trial import TrialState

        self.study.tell(self.number, state=TrialState.PRUNED)
        self.record.update(pruned=True, epoch=epoch, value=value)
        log.info("Optuna trial %d pruned after epoch %d: %s = %.4f falls behind the other trials (%s pruner)",
                 self.number, epoch, self.monitor, value, self.pruner_name)
        return True

    def summary_sections(self) -> Dict[str, Any]:
        return {"optuna_pruning": self.record}
