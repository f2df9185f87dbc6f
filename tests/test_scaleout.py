"""Multirun robustness and the GPU benchmark's CPU mode (DDP on CPU: tests/test_strategies_e2e.py)."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, TEST_ENV, TINY


@pytest.mark.integration
def test_multirun_failing_job_is_reported_and_the_rest_run(tmp_path):
    sweep = tmp_path / "sweep"
    args = [a for a in TINY if not a.startswith("data.per_class")] + ["data.per_class=12", "trainer.max_epochs=1"]
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", f"hydra.sweep.dir={sweep}",
           "data.samples_per_class=500,3", *args]  # the failing job first: the sweep goes on after it
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **TEST_ENV})
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 job(s) of the sweep failed" in proc.stderr and "samples_per_class=500" in proc.stderr
    assert "has only" in json.loads((sweep / "0" / "failed.json").read_text())["error"]
    assert not (sweep / "0" / "summary.json").exists()
    assert json.loads((sweep / "1" / "summary.json").read_text())["samples_per_class"] == 3


@pytest.mark.integration
def test_a_sweep_runs_its_jobs_side_by_side_with_the_cores_shared(tmp_path):
    """hydra/launcher=parallel (hydra-joblib-launcher): both jobs finish, each with its share of the cores."""
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", f"hydra.sweep.dir={sweep}", "hydra/launcher=parallel",
           "seed=0,1", *TINY, "trainer.max_epochs=1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **TEST_ENV})
    assert proc.returncode == 0, proc.stderr[-3000:]
    cores = len(os.sched_getaffinity(0))
    for job in ("0", "1"):
        assert json.loads((sweep / job / "summary.json").read_text())["seed"] == int(job)
        log = (sweep / job / "train.log").read_text()
        assert f"{min(2, cores)} jobs side by side on {cores} cores: {max(1, cores // 2)} torch thread(s) each" in log


def test_bench_gpu_script_runs_its_code_paths_on_cpu(capsys, monkeypatch):
    """The GPU benchmark (run on a GPU machine) kept working: its CPU smoke mode, in this process."""
    import runpy

    monkeypatch.setattr(sys, "argv", ["bench_gpu.py", "--device", "cpu", "--arch", "resnet18", "--image-size", "32",
                                      "--batch-size", "4", "--steps", "2", "--warmup", "1", "--classes", "5"])
    runpy.run_path(str(ROOT / "scripts" / "bench_gpu.py"), run_name="__main__")
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows] == [
        "plain loop, bf16, channels_last", "plain loop, fp32, NCHW", "plain loop, bf16, NCHW",
        "harness, bf16, channels_last", "plain loop, bf16, channels_last (again)"]
    assert all(float(r.split("|")[2].replace(",", "")) > 0 for r in rows)


def test_a_requeue_signal_saves_in_training_and_points_to_the_last_epoch_otherwise(tmp_path):
    from types import SimpleNamespace

    from tl_lightning.resume import RunInProgress

    saved = []
    last = str(tmp_path / "last.ckpt")

    def trainer(fn="fit", training=True, world_size=1, sanity_checking=False):
        return SimpleNamespace(state=SimpleNamespace(fn=fn), training=training, world_size=world_size,
                               sanity_checking=sanity_checking,
                               save_checkpoint=lambda path, weights_only: saved.append(path))

    run = RunInProgress()
    assert run.save_on_signal() == "no run in progress; nothing to save"
    for case, expected in ((trainer(), f"saved {last}"),
                           (trainer(training=False), f"in validation: the job resumes from {last} of the last"),
                           (trainer(world_size=2), f"2 ranks: the job resumes from {last}"),
                           (trainer(sanity_checking=True, training=False), "no run in progress"),
                           (trainer(fn="test", training=False), "no run in progress")):
        with run.tracking(case, last):
            assert run.save_on_signal().startswith(expected)
    assert saved == [last]  # only the single-process training step writes
