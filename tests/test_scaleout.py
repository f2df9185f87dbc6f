"""DDP on CPU (2 gloo processes) and multirun robustness."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TEST_ENV, TINY, run_train


@pytest.mark.integration
@pytest.mark.xdist_group("ddp")
def test_ddp_cpu_two_ranks_share_one_dir_and_end_with_identical_weights(tmp_path):
    run = tmp_path / "run"
    args = [a for a in TINY if not a.startswith("logger=")] + [
        "trainer=ddp_cpu", "logger=wandb", "strategy=finetune", "trainer.max_epochs=2",
        f"+callbacks.extra.digest={{_target_: tests.ddp_probe.WeightDigest, path: {tmp_path / 'digests'}}}",
    ]
    proc = run_train(args, run, env={"WANDB_MODE": ""})
    assert proc.returncode == 0, proc.stderr[-4000:]
    digests = sorted((tmp_path / "digests").glob("rank*.sha256"))
    assert [d.name for d in digests] == ["rank0.sha256", "rank1.sha256"]
    rank0, rank1 = (d.read_text() for d in digests)
    assert "world=2" in rank0 and rank0 == rank1, (rank0, rank1)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["strategy"] == "finetune" and summary["global_step"] > 0
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1, "one W&B run, from rank 0"
    assert not (ROOT / "logs" / "train" / "runs").exists() or not any(
        "train_ddp_process" in p.name for p in (ROOT / "logs" / "train" / "runs").rglob("*")), "no forked run dirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digests", "run"]


@pytest.mark.integration
def test_multirun_failing_job_is_reported_and_the_rest_run(tmp_path):
    sweep = tmp_path / "sweep"
    args = [a for a in TINY if not a.startswith("data.per_class")] + ["data.per_class=12", "trainer.max_epochs=1"]
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", f"hydra.sweep.dir={sweep}",
           "data.samples_per_class=3,500,4", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **TEST_ENV})
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 job(s) of the sweep failed" in proc.stderr and "samples_per_class=500" in proc.stderr
    assert json.loads((sweep / "0" / "summary.json").read_text())["samples_per_class"] == 3
    assert "has only" in json.loads((sweep / "1" / "failed.json").read_text())["error"]
    assert not (sweep / "1" / "summary.json").exists()
    assert json.loads((sweep / "2" / "summary.json").read_text())["samples_per_class"] == 4


@pytest.mark.integration
def test_bench_gpu_script_runs_its_code_paths_on_cpu():
    """The GPU benchmark (run on a GPU machine) kept working: its CPU smoke mode."""
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_gpu.py"), "--device", "cpu", "--arch", "resnet18",
           "--image-size", "32", "--batch-size", "4", "--steps", "2", "--warmup", "1", "--classes", "5"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "plain PyTorch loop:" in proc.stdout and "% of plain" in proc.stdout
