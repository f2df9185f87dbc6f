"""hydra/launcher=slurm on a real one-node Slurm cluster (scripts/slurm_local.sh up, which `make test`
runs). Where Slurm is not running, these tests skip and say why."""

import json
import math
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, TEST_ENV, run_multirun
from tests.test_cli import assert_user_error

# one Slurm test at a time (pytest-xdist): the local cluster has 2 CPUs
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("slurm")]

SMALL = ["backbone=timm", "backbone.name=mobilenetv3_small_050", "backbone.pretrained=false", "data=synthetic",
         "data.image_size=32", "data.batch_size=8", "data.per_class=12", "callbacks.rich_progress_bar.enabled=false",
         "callbacks.confusion_matrix.enabled=false", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.timeout_min=30"]  # submitit counts a USR2 before 80 % of the limit as a preemption


def _slurm_state() -> str:
    if shutil.which("sinfo") is None:
        return "sinfo is not installed (run scripts/slurm_local.sh up as root)"
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    if proc.returncode != 0:
        return f"sinfo failed: {proc.stderr.strip()[:200]} (run scripts/slurm_local.sh up as root)"
    states = proc.stdout.split()
    if not any(s.startswith(("idle", "mixed", "allocated")) for s in states):
        return f"no usable Slurm node (states: {states})"
    return ""


@pytest.fixture(scope="module")
def slurm():
    reason = _slurm_state()
    if reason:
        pytest.skip(f"Slurm is not available: {reason}")


def test_two_job_multirun_through_the_launcher(slurm, tmp_path):
    proc = run_multirun(SMALL + ["logger=csv", "trainer.max_epochs=1", "seed=0,1"], tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    seeds = set()
    for job in ("0", "1"):
        summary = json.loads((tmp_path / job / "summary.json").read_text())
        seeds.add(summary["seed"])
        assert summary["global_step"] > 0 and summary["resumed_from"] is None
        config = (tmp_path / job / ".hydra" / "overrides.yaml").read_text()
        assert "resume=auto" in config  # the launcher adds it: a requeued job continues
    assert seeds == {0, 1}
    slurm_jobs = list((tmp_path / ".submitit").iterdir())
    assert slurm_jobs and any(p.name.endswith("_log.out") for d in slurm_jobs if d.is_dir() for p in d.iterdir())


def _squeue_reason(job_id: str) -> str:
    proc = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%r"], capture_output=True, text=True, timeout=30)
    return proc.stdout.strip()


def _wait_for(predicate, timeout, what, process):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            raise AssertionError(f"the sweep ended while waiting for {what}: {process.stderr.read()[-3000:]}")
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_preempted_job_is_requeued_and_resumes_from_its_checkpoint(slurm, tmp_path):
    """USR2 is what Slurm sends before a time limit or a preemption (signal_delay_s): submitit's handler calls
    the launcher's checkpoint(), which writes last.ckpt, and requeues the job; the requeued job resumes."""
    sweep = tmp_path / "sweep"
    epochs = 16  # an epoch takes a fraction of a second: enough of them that the signal comes while fit runs
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", f"hydra.sweep.dir={sweep}", *SMALL, "logger=wandb",
           f"trainer.max_epochs={epochs}", "callbacks.early_stopping.enabled=false", "seed=0"]
    env = {**os.environ, **TEST_ENV, "WANDB_MODE": ""}
    main = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run = sweep / "0"
        _wait_for(lambda: (run / "checkpoints" / "last.ckpt").exists(), 300, "the job's first last.ckpt", main)
        job_id = next(p.name for p in (sweep / ".submitit").iterdir() if p.name.isdigit())
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
        # Slurm holds a requeued job for about two minutes (BeginTime); let it start now
        _wait_for(lambda: _squeue_reason(job_id) == "BeginTime", 120, "the requeued job", main)
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True, timeout=30)
        out, err = main.communicate(timeout=600)
    finally:
        if main.poll() is None:
            main.kill()
    assert main.returncode == 0, err[-4000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"].endswith("last.ckpt")
    assert summary["started_at"]["global_step"] > 0  # it continued: it did not start from scratch
    assert summary["global_step"] == epochs * math.ceil(summary["split"]["sizes"]["train"] / 8)  # none lost or repeated
    logs = "".join(p.read_text() for p in (sweep / ".submitit" / job_id).glob("*_log.*"))
    # the signal lands in a training step (last.ckpt saved then) or in the epoch's validation (the previous
    # epoch's last.ckpt is the resume point); either way nothing is lost or repeated (global_step above)
    assert "this job is preempted" in logs and ("requeue: saved" in logs or "requeue: in validation: the job resumes"
                                                in logs), logs[-3000:]
    assert "resumed at epoch" in logs
    wandb_runs = {p.name.rsplit("-", 1)[-1] for p in (run / "wandb").glob("offline-run-*")}
    assert len(wandb_runs) == 1, wandb_runs  # the requeued job continued the same W&B run


@pytest.mark.parametrize("args,fragments", [
    (["hydra.launcher.tasks_per_node=2"], ["tasks_per_node=2 but trainer.devices=1", "one Slurm task per device"]),
    (["hydra.launcher.nodes=2"], ["job 0", "nodes=2 but trainer.num_nodes=1"]),
    (["trainer=gpu", "hydra.launcher.gpus_per_node=0"], ["gpus_per_node=0", "request at least 1"]),
])
def test_resource_mismatch_is_refused_before_submission(tmp_path, args, fragments):
    proc = run_multirun(SMALL + args, tmp_path)
    assert_user_error(proc, *fragments)
    assert not (tmp_path / ".submitit").exists(), "nothing was submitted"


def test_a_request_no_node_fits_is_refused_before_submission(slurm, tmp_path):
    """The launcher's default cpus_per_task (4) on this cluster's 2-CPU node would stay pending forever."""
    nproc = os.cpu_count()
    proc = run_multirun([a for a in SMALL if "cpus_per_task" not in a] + [f"hydra.launcher.cpus_per_task={2 * nproc}"],
                        tmp_path)
    assert_user_error(proc, f"asks for {2 * nproc} CPUs", f"have at most {nproc} CPUs", "cpus_per_task")
    assert not (tmp_path / ".submitit").exists(), "nothing was submitted"


def test_plain_sbatch_script_runs_ddp_with_one_task_per_device(slurm, tmp_path):
    """scripts/slurm_sbatch.sh: srun starts 2 tasks, Lightning uses them as the 2 DDP ranks (gloo)."""
    run = tmp_path / "run"
    args = [a for a in SMALL if not a.startswith("hydra")] + ["logger=csv", "trainer.max_epochs=2",
            f"+callbacks.extra.digest={{_target_: tests.ddp_probe.WeightDigest, path: {tmp_path / 'dg'}}}"]
    env = {**os.environ, **TEST_ENV, "RUN_DIR": str(run),
           "PYTHON": sys.executable}
    proc = subprocess.run(["sbatch", "--wait", f"--output={tmp_path}/%j.out", str(ROOT / "scripts" / "slurm_sbatch.sh"),
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = "".join(p.read_text() for p in tmp_path.glob("*.out"))
    assert proc.returncode == 0, (proc.stderr, log[-3000:])
    digests = sorted((tmp_path / "dg").glob("rank*.sha256"))
    assert [d.name for d in digests] == ["rank0.sha256", "rank1.sha256"]
    rank0, rank1 = (d.read_text() for d in digests)
    assert "world=2" in rank0 and rank0 == rank1
    assert json.loads((run / "summary.json").read_text())["global_step"] > 0
