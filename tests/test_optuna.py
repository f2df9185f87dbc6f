"""Optuna search through hydra-optuna-sweeper on current Optuna, with a crashing trial."""

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
