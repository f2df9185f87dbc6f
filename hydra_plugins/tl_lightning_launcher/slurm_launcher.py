"""``hydra/launcher=slurm``: hydra-submitit-launcher's SlurmLauncher with three additions.

1. Before anything is submitted, every job's config is composed and checked: Slurm's
   ``tasks_per_node`` must equal ``trainer.devices`` (Lightning runs one DDP rank per Slurm task),
   ``nodes`` must equal ``trainer.num_nodes``, and a GPU job needs ``gpus_per_node >= devices``.
   A mismatch stops the submission with one line; so do missing Slurm tools, an unreachable controller,
   an unknown partition, or a request (CPUs, memory, GPUs per node) that no node of the partition fits.
2. Every job runs with ``resume=auto`` (unless the user set ``resume``): a job that Slurm requeues,
   or that is re-run in its dir, continues from its own ``checkpoints/last.ckpt`` and W&B run id.
3. Submitit owns requeue (Lightning's SLURM auto-requeue is switched off in ``run.py``): when Slurm
   announces the time limit or preemption (USR2, ``signal_delay_s`` before the end), ``checkpoint``
   writes ``last.ckpt`` of the run in progress, then submitit requeues the job
   (``max_num_timeout`` times for time limits; preemptions always).
"""

import logging
import shutil
import subprocess
from typing import Any, List, Sequence

from omegaconf import OmegaConf

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from tl_lightning.errors import ConfigError

log = logging.getLogger(__name__)


def _with_resume(overrides: Sequence[str]) -> List[str]:
    overrides = list(overrides)
    if not any(o.split("=", 1)[0].lstrip("+~") == "resume" for o in overrides):
        overrides.append("resume=auto")
    return overrides


def check_resources(params: dict, cfg, job: str) -> None:
    """Slurm resources against the job's trainer config; raise ConfigError on a mismatch."""
    devices, nodes = cfg.trainer.devices, cfg.trainer.num_nodes
    if not isinstance(devices, int):
        raise ConfigError(f"{job}: trainer.devices={devices} must be a number of devices per node on Slurm "
                          "(one Slurm task per device)")
    if params.get("tasks_per_node") != devices:
        raise ConfigError(f"{job}: hydra.launcher.tasks_per_node={params.get('tasks_per_node')} but trainer.devices="
                          f"{devices}; Lightning needs one Slurm task per device: leave tasks_per_node at its default "
                          "(${trainer.devices}) or make them equal")
    if params.get("nodes") != nodes:
        raise ConfigError(f"{job}: hydra.launcher.nodes={params.get('nodes')} but trainer.num_nodes={nodes}; "
                          "make them equal")
    gpus = params.get("gpus_per_node") or 0
    if cfg.trainer.accelerator in ("gpu", "cuda") and gpus < devices:
        raise ConfigError(f"{job}: trainer.accelerator={cfg.trainer.accelerator} with trainer.devices={devices} but "
                          f"hydra.launcher.gpus_per_node={params.get('gpus_per_node')}; request at least {devices}")


def _slurm(args: List[str]) -> str:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"hydra/launcher=slurm: `{' '.join(args)}` did not answer in 30 s; is the Slurm controller "
                          "up?") from None
    if proc.returncode != 0:
        first = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[:1]
        raise ConfigError(f"hydra/launcher=slurm: `{' '.join(args)}` failed: {first[0] if first else proc.returncode}; "
                          "is the Slurm controller up (scontrol ping)?")
    return proc.stdout


def _gpus(gres: str) -> int:
    """GPUs in a sinfo %G field such as gpu:4, gpu:a100:2(S:0-1) or (null)."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def check_cluster(params: dict) -> None:
    """Slurm's tools, its controller, the partition, and a node of it that fits one job's request: one
    ConfigError line each, before anything is submitted (a request no node fits would stay pending forever)."""
    missing = [tool for tool in ("sbatch", "squeue", "sinfo", "scontrol") if shutil.which(tool) is None]
    if missing:
        raise ConfigError(f"hydra/launcher=slurm needs Slurm's tools on PATH; not found: {', '.join(missing)} (run on "
                          "a Slurm login node, or scripts/slurm_local.sh up for a one-node cluster here)")
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    if ping.returncode != 0 or "UP" not in ping.stdout:
        state = ((ping.stdout.strip() or ping.stderr.strip()).splitlines() or ["no answer"])[0]
        raise ConfigError(f"hydra/launcher=slurm: the Slurm controller is not reachable ({state}); nothing was "
                          "submitted")
    lines = [ln.split() for ln in _slurm(["sinfo", "-h", "-N", "-o", "%P %c %m %G"]).splitlines() if ln.strip()]
    partitions = sorted({row[0].rstrip("*") for row in lines})
    wanted = params.get("partition") or next((row[0].rstrip("*") for row in lines if row[0].endswith("*")), None)
    if wanted is None or wanted not in partitions:
        raise ConfigError(f"hydra.launcher.partition={wanted}: no such Slurm partition; valid: {', '.join(partitions)}")
    nodes = [row for row in lines if row[0].rstrip("*") == wanted]
    cpus = (params.get("cpus_per_task") or 1) * (params.get("tasks_per_node") or 1)
    mem_mb = (params.get("mem_gb") or 0) * 1024
    gpus = params.get("gpus_per_node") or 0
    fits = [row for row in nodes if int(row[1].rstrip("+")) >= cpus and (not mem_mb or int(row[2].rstrip("+")) >= mem_mb)
            and _gpus(row[3]) >= gpus]
    if not fits:
        most = (max(int(r[1].rstrip("+")) for r in nodes), max(int(r[2].rstrip("+")) for r in nodes),
                max(_gpus(r[3]) for r in nodes))
        raise ConfigError(f"hydra/launcher=slurm: one job asks for {cpus} CPUs (cpus_per_task x tasks_per_node), "
                          f"{mem_mb // 1024 or 'any'} GB and {gpus} GPUs per node, but the nodes of partition '{wanted}' "
                          f"have at most {most[0]} CPUs, {most[1] // 1024} GB and {most[2]} GPUs; lower "
                          "hydra.launcher.cpus_per_task / mem_gb / gpus_per_node")


class SlurmLauncher(SubmititSlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        job_overrides = [_with_resume(o) for o in job_overrides]
        for idx, overrides in enumerate(job_overrides):
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            check_resources(self.params, cfg, f"job {initial_job_idx + idx} ({' '.join(overrides)})")
            OmegaConf.resolve(cfg.trainer)
        check_cluster(self.params)
        return super().launch(job_overrides, initial_job_idx)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit on rank 0 when Slurm signals the time limit or preemption."""
        from tl_lightning.resume import RUN_IN_PROGRESS

        try:
            log.warning("requeue: %s", RUN_IN_PROGRESS.save_on_signal())
        except Exception:  # the requeue must happen even if the save fails; last.ckpt of the epoch remains
            log.exception("requeue: saving the checkpoint failed; the job resumes from the last epoch's last.ckpt")
        return super().checkpoint(*args, **kwargs)
