"""Optuna search (hparams_search=optuna: the tl_optuna sweeper, hydra-optuna-sweeper's samplers) with a crashing
trial, every epoch reported, a trial pruned by its callback, bad pruning options."""

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, TEST_ENV, TINY


@pytest.mark.integration
def test_optuna_study_records_failed_trial_and_goes_on(tmp_path):
    sweep = tmp_path / "study"
    cmd = [sys.executable, str(ROOT / "train.py"), "hparams_search=optuna", f"hydra.sweep.dir={sweep}",
           "hydra.sweeper.n_trials=4", f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db",
           "hydra.sweeper.study_name=t", "data.samples_per_class=choice(3,500)", *TINY, "trainer.max_epochs=1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **TEST_ENV})
    out = proc.stdout + proc.stderr
    assert "Best value:" in out, out[-4000:]
    import optuna

    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path}/optuna.db")
    states = [t.state.name for t in study.trials]
    assert len(states) == 4 and "FAIL" in states and "COMPLETE" in states, states
    assert study.direction.name == "MAXIMIZE"  # optimized_metric=val/acc
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert all(t.params["data.samples_per_class"] == 500 for t in failed)
    # every trial reported its epochs to the study (callbacks.optuna_pruning; none pruned before 4 complete trials)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert done and all(sorted(t.intermediate_values) == [0] for t in done)


def test_a_trial_behind_the_others_is_pruned_and_recorded(tmp_path):
    """The callback in a trial's run: three earlier trials at 100 % every epoch, so this one (lr 1e-7, near chance)
    is below their median once past its warm-up epoch, recorded PRUNED, and its run stops there and says so."""
    import optuna

    from tests.helpers import train_inprocess
    from tl_lightning.callbacks.optuna_storage import open_storage

    storage = str(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(storage), direction="maximize")
    lr = optuna.distributions.FloatDistribution(1e-8, 1.0, log=True)
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(value=1.0, params={"strategy.lr": 0.01}, distributions={"strategy.lr": lr},
                                                  intermediate_values={e: 1.0 for e in range(4)}))
    trial = study.ask({"strategy.lr": lr})
    args = TINY + ["trainer.max_epochs=4", "strategy.lr=1e-7", "callbacks.early_stopping.enabled=false",
                   "callbacks.optuna_pruning.startup_trials=3", "callbacks.optuna_pruning.warmup_epochs=1",
                   f"callbacks.optuna_pruning.trial={trial.number}", "callbacks.optuna_pruning.study=s",
                   f"callbacks.optuna_pruning.storage={storage}"]
    _, summary = train_inprocess(args, tmp_path / "run")
    record = summary["optuna_pruning"]
    assert record["pruned"] is True and record["epoch"] == 1 and record["value"] < 1.0, record
    assert summary["epochs_run"] == 2 and summary["test"]  # stopped after epoch 1, still tested
    again = optuna.load_study(study_name="s", storage=open_storage(storage))
    frozen = next(t for t in again.trials if t.number == trial.number)
    assert frozen.state.name == "PRUNED" and sorted(frozen.intermediate_values) == [0, 1]


@pytest.mark.parametrize("override, fragment", [
    ("callbacks.optuna_pruning.pruner=asha", "'asha' is not valid; valid: median, hyperband, none"),
    ("callbacks.optuna_pruning.warmup_epochs=-1", "callbacks.optuna_pruning.warmup_epochs': must be >= 0"),
    ("callbacks.optuna_pruning.trial=3", "is set by the Optuna sweeper with its study and storage"),
])
def test_bad_pruning_options_are_one_line(compose, override, fragment):
    from tests.helpers import one_line
    from tl_lightning.config.validate import validate_config
    from tl_lightning.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        validate_config(compose([override]))
    one_line(info.value, fragment)
