"""``python train.py``: Hydra composes the config; we check it, then run the task.

Only Hydra and OmegaConf are imported at module level: the config is checked
against the schemas before torch, Lightning or any model code is imported.
"""

import copy
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import List, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from tl_lightning.config import CONFIG_DIR, group_options
from tl_lightning.config.validate import validate_config
from tl_lightning.errors import USER_ERROR_EXIT_CODE, TLError, one_line

log = logging.getLogger("tl_lightning")
_TRACEBACK_ENV = "TL_USER_FULL_ERROR"  # the user's own HYDRA_FULL_ERROR, which main() overrides
FAILED_JOBS: List[str] = []  # multirun jobs that failed, reported by main() when the sweep ends


def _direction(metric: str) -> str:
    return "minimize" if metric.endswith("/loss") else "maximize"


def _slurm_gpus(accelerator: str, devices) -> Optional[int]:
    """GPUs per node to request from Slurm for hydra/launcher=slurm."""
    return int(devices) if accelerator in ("gpu", "cuda") and isinstance(devices, int) else None


def _groups_help() -> str:
    return "\n".join(f"{group}: {', '.join(options)}" for group, options in group_options().items())


OmegaConf.register_new_resolver("tl_direction", _direction, replace=True)
OmegaConf.register_new_resolver("tl_slurm_gpus", _slurm_gpus, replace=True)
OmegaConf.register_new_resolver("tl_config_groups", _groups_help, replace=True)


class CheckBeforeWriting(Callback):
    """Checks a single run's config before Hydra writes anything into its run dir (``.hydra/``, ``train.log``),
    so a mistake aimed at an existing run dir (``hydra.run.dir=<finished run> strategy.lr=-1``) leaves it as it
    was. The task checks again (multirun jobs are checked there only, each in its own new dir)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from tl_lightning.compose import task_config

        cfg = copy.deepcopy(config)
        try:
            task_config(cfg, os.path.abspath(cfg.hydra.run.dir))  # run_job registers Hydra's node again later
        except TLError as exc:  # Hydra turns a callback's exception into a warning and goes on: stop here
            if os.environ.get(_TRACEBACK_ENV) == "1":
                return  # the task's own check raises it again, with its traceback
            exit_with(str(exc))


def task(cfg: DictConfig) -> Optional[float]:
    """The Hydra task function: returns the optimized metric for sweepers.

    A user mistake ends a single run here with one line and status 2 (SystemExit passes
    through Hydra's job runner, which would otherwise add lines of its own). In a
    multirun, a failing job is recorded in its dir (failed.json) and the sweep goes on.
    """
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        return _run_task(cfg)
    except TLError as exc:
        if os.environ.get(_TRACEBACK_ENV) == "1":
            raise
        if not multirun:
            exit_with(str(exc))
        _record_failure(str(exc))
    except Exception as exc:
        if not multirun:
            raise
        log.exception("job failed")
        _record_failure(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
    return None  # sweepers record a failed job (Optuna: a FAIL trial)


def _record_failure(message: str) -> None:
    hydra_cfg = HydraConfig.get()
    job = f"job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)})"
    print(f"error: {job}: {message}", file=sys.stderr, flush=True)
    FAILED_JOBS.append(f"{job}: {message}")
    with open(os.path.join(hydra_cfg.runtime.output_dir, "failed.json"), "w") as fh:
        json.dump({"error": message, "overrides": list(hydra_cfg.overrides.task)}, fh, indent=2)


def _pin_job_for_ddp_children(output_dir: str) -> None:
    """Lightning's DDP launcher starts each extra rank as `sys.argv + hydra.run.dir=<hydra.run.dir>`.

    In a multirun that would start a whole new sweep in every child, in a new dir. Give the
    children this job's own overrides and output dir instead, so all ranks share one dir.
    """
    hydra_cfg = HydraConfig.get()
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = output_dir


def exit_with(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_EXIT_CODE)


def _run_task(cfg: DictConfig) -> Optional[float]:
    cfg = validate_config(cfg)
    hydra_cfg = HydraConfig.get()
    output_dir = hydra_cfg.runtime.output_dir
    group = None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        group = Path(hydra_cfg.sweep.dir).name
        _pin_job_for_ddp_children(output_dir)
    choice = hydra_cfg.runtime.choices.get("backbone", "")
    backbone_choice = f"backbone={choice}" + (f" backbone.name={cfg.backbone.name}" if choice == "timm" else "")

    from tl_lightning.run import train  # heavy imports only after the config is known to be valid

    metrics, summary = train(cfg, output_dir, group=group, backbone_choice=backbone_choice)
    value = metrics.get(cfg.optimized_metric)
    if value is None or math.isnan(value):
        log.warning("%s is %s (diverged or never computed); the job reports no value", cfg.optimized_metric, value)
        return None
    log.info("%s = %s; summary in %s", cfg.optimized_metric, value, os.path.join(output_dir, "summary.json"))
    return value


def main() -> None:
    """Entry point: user mistakes print one line and exit with status 2."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    # setdefault: DDP child processes inherit the HYDRA_FULL_ERROR=1 set below, not the user's wish
    os.environ.setdefault(_TRACEBACK_ENV, os.environ.get("HYDRA_FULL_ERROR", ""))
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let composition errors reach us instead of Hydra's multi-line report
    hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")(task)
    try:
        hydra_main()
    except (TLError, HydraException, OmegaConfBaseException) as exc:
        if os.environ.get(_TRACEBACK_ENV) == "1":
            raise
        exit_with(one_line(exc))
    if FAILED_JOBS:
        print(f"error: {len(FAILED_JOBS)} job(s) of the sweep failed (see failed.json in their dirs):", file=sys.stderr)
        for line in FAILED_JOBS:
            print(f"  {line}", file=sys.stderr)
        sys.exit(1)
