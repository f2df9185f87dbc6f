"""``hydra/sweeper=tl_optuna`` (what ``hparams_search=optuna`` uses): an Optuna study whose trials can be pruned.

hydra-optuna-sweeper asks Optuna for trials and launches them, but it hands a job no handle on its trial, so a job
cannot report its epochs and the pruner never sees them; and it tells every trial that returns a value COMPLETE.
This sweeper keeps its configuration (``sampler``, its sampler config group, ``direction``, ``storage``,
``study_name``, ``n_trials``, ``n_jobs``, ``max_failure_rate``, ``params`` in Hydra's sweep syntax) and adds:

- every job gets ``callbacks.optuna_pruning.{trial,study,storage}``: the callback
  (``tl_lightning/callbacks/pruning.py``) reports the monitored metric after each validation and, when the pruner
  says so, records the trial PRUNED and stops the run after that epoch;
- a trial already PRUNED when its job returns is left so (a value is told only to the others; a job that fails
  or returns no value is a FAIL trial, and the study goes on up to ``max_failure_rate``);
- ``storage: null`` means a journal file in the sweep dir (``<sweep dir>/optuna.journal``), which jobs in other
  processes (``hydra/launcher=parallel``, Slurm) reach as well as this one; any Optuna storage URL works too;
- ``<sweep dir>/optimization_results.yaml``: the best value and parameters, and how many trials completed, were
  pruned or failed.
"""

import logging
import os
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from tl_lightning.callbacks.optuna_storage import open_storage

log = logging.getLogger(__name__)
JOURNAL = "optuna.journal"


def distribution(override: Override):
    """The Optuna distribution of one sweep override (choice, range, interval; tag(log, ...) and tag(int, ...))."""
    import optuna.distributions as D

    value = override.value()
    if isinstance(value, ChoiceSweep):
        return D.CategoricalDistribution(list(value.list))
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if all(float(v).is_integer() for v in (start, stop, step)):
            return D.IntDistribution(int(start), int(stop) - 1, step=int(step))
        return D.CategoricalDistribution(list(override.sweep_iterator()))
    if isinstance(value, IntervalSweep):
        log_scale, as_int = "log" in value.tags, "int" in value.tags
        if as_int:
            return D.IntDistribution(int(value.start), int(value.end), log=log_scale)
        return D.FloatDistribution(value.start, value.end, log=log_scale)
    raise ValueError(f"{override.key_or_group}: {override.input_line} is not a sweep Optuna can sample")


def quoted(value: str) -> str:
    """A string as a quoted Hydra override value (a path or URL may hold spaces, '=' or commas)."""
    return "'" + value.replace("'", "\\'") + "'"


def search_space(specs: Sequence[str]) -> Tuple[Dict[str, Any], List[str]]:
    """(name -> distribution, fixed overrides) of ``key=value`` specs: the sweeps are searched, the rest passed on."""
    space, fixed = {}, []
    for override in OverridesParser.create().parse_overrides(list(specs)):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


class OptunaPruningSweeper(Sweeper):
    def __init__(self, sampler: Any, direction: Any, storage: Optional[str], study_name: Optional[str],
                 n_trials: int, n_jobs: int, max_failure_rate: float, params: Optional[DictConfig] = None) -> None:
        self.sampler_cfg, self.direction, self.storage = sampler, str(direction), storage
        self.study_name, self.n_trials, self.n_jobs = study_name, n_trials, n_jobs
        self.max_failure_rate = max_failure_rate
        self.params = OmegaConf.to_container(params, resolve=True) if params is not None else {}
        self.launcher, self.job_idx, self.sweep_dir = None, 0, ""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweep_dir = config.hydra.sweep.dir
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> None:
        import optuna

        if self.direction not in ("minimize", "maximize"):
            raise ValueError(f"hydra.sweeper.direction: '{self.direction}' is not valid; valid: minimize, maximize")
        space, fixed = search_space([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        fixed = [f for f in fixed if f.split("=", 1)[0] not in space]
        os.makedirs(self.sweep_dir, exist_ok=True)
        storage = self.storage or os.path.abspath(os.path.join(self.sweep_dir, JOURNAL))
        sampler = None
        if self.sampler_cfg is not None:
            with warnings.catch_warnings():  # the plugin's sampler configs spell out arguments Optuna 5 deprecates
                warnings.simplefilter("ignore", FutureWarning)
                sampler = instantiate(self.sampler_cfg)
        study = optuna.create_study(study_name=self.study_name, storage=open_storage(storage), sampler=sampler,
                                    direction=self.direction, load_if_exists=True)
        log.info("Optuna study %s in %s: %d trials, %s, %s", study.study_name, storage, self.n_trials,
                 type(study.sampler).__name__, self.direction)
        counts = {"complete": 0, "pruned": 0, "fail": 0}
        left = self.n_trials
        while left > 0:
            trials = [study.ask(space) for _ in range(min(left, max(1, self.n_jobs)))]
            overrides = [tuple(fixed + [f"{k}={v}" for k, v in t.params.items()] +
                               [f"callbacks.optuna_pruning.trial={t.number}",
                                f"callbacks.optuna_pruning.study={quoted(study.study_name)}",
                                f"callbacks.optuna_pruning.storage={quoted(storage)}"]) for t in trials]
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            failures = 0
            for trial, ret in zip(trials, returns):
                outcome = self._tell(study, trial, ret)
                counts[outcome] += 1
                failures += outcome == "fail"
            if failures / len(returns) > self.max_failure_rate:
                raise RuntimeError(f"{failures} of {len(returns)} trials failed, above "
                                   f"hydra.sweeper.max_failure_rate={self.max_failure_rate}")
            left -= len(trials)
        self._write_results(study, counts)

    @staticmethod
    def _tell(study, trial, ret) -> str:
        """Record one launched trial: 'pruned' (the job's callback already told), 'complete' or 'fail'."""
        from optuna.trial import TrialState

        state = next(t.state for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        if state == TrialState.PRUNED:
            return "pruned"
        try:
            value = float(ret.return_value)
        except Exception as exc:  # the job raised, or returned no value (a failed or diverged run)
            log.warning("trial %d failed: %s", trial.number, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            study.tell(trial, state=TrialState.FAIL)
            return "fail"
        study.tell(trial, value)
        return "complete"

    def _write_results(self, study, counts: Dict[str, int]) -> None:
        from optuna.trial import TrialState

        done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        results: Dict[str, Any] = {"name": "optuna", "study": study.study_name, "trials": counts}
        if done:
            results.update(best_params=study.best_trial.params, best_value=study.best_trial.value)
            log.info("Best parameters: %s", study.best_trial.params)
            log.info("Best value: %s", study.best_trial.value)
        log.info("Trials: %d complete, %d pruned, %d failed", counts["complete"], counts["pruned"], counts["fail"])
        OmegaConf.save(OmegaConf.create(results), os.path.join(self.sweep_dir, "optimization_results.yaml"))
