"""``hydra/launcher=slurm``: hydra-submitit-launcher's SlurmLauncher with three additions.

1. Before anything is submitted, every job's config is composed and checked: Slurm's
   ``tasks_per_node`` must equal ``trainer.devices`` (Lightning runs one DDP rank per Slurm task),
   ``nodes`` must equal ``trainer.num_nodes``, and a GPU job needs ``gpus_per_node >= devices``.
   A mismatch stops the submission with one line.
2. Every job runs with ``resume=auto`` (unless the user set ``resume``): a job that Slurm requeues,
   or that is re-run in its dir, continues from its own ``checkpoints/last.ckpt`` and W&B run id.
3. Submitit owns requeue (Lightning's SLURM auto-requeue is switched off in ``run.py``): when Slurm
   announces the time limit or preemption (USR2, ``signal_delay_s`` before the end), ``checkpoint``
   writes ``last.ckpt`` of the run in progress, then submitit requeues the job
   (``max_num_timeout`` times for time limits; preemptions always).
"""

import logging
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


class SlurmLauncher(SubmititSlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        job_overrides = [_with_resume(o) for o in job_overrides]
        for idx, overrides in enumerate(job_overrides):
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            check_resources(self.params, cfg, f"job {initial_job_idx + idx} ({' '.join(overrides)})")
            OmegaConf.resolve(cfg.trainer)
        return super().launch(job_overrides, initial_job_idx)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit on rank 0 when Slurm signals the time limit or preemption."""
        from tl_lightning.resume import RUN_IN_PROGRESS

        try:
            path = RUN_IN_PROGRESS.save_on_signal()
            log.warning("requeue: %s", f"saved {path}" if path else "no run in progress; nothing to save")
        except Exception:  # the requeue must happen even if the save fails; last.ckpt of the epoch remains
            log.exception("requeue: saving the checkpoint failed; the job resumes from the last epoch's last.ckpt")
        return super().checkpoint(*args, **kwargs)
