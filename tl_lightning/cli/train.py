"""``python train.py``: Hydra composes the config; we check it, then run the task.

Only Hydra and OmegaConf are imported at module level: the config is checked
against the schemas before torch, Lightning or any model code is imported.
"""

# Imports of tl_lightning inside functions keep start-up fast: the config is checked before torch is imported.

import copy
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import List, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from tl_lightning.cli.common import TRACEBACK_ENV as _TRACEBACK_ENV
from tl_lightning.cli.common import exit_with, registered_copy, run_app
from tl_lightning.config import group_options
from tl_lightning.config.validate import validate_config
from tl_lightning.context import RunLayout
from tl_lightning.errors import Interrupted, TLError

log = logging.getLogger("tl_lightning")
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


def _stop_in_callback(exc: TLError) -> None:
    """Exit from a Hydra callback (an exception there would only become a warning), with the traceback when
    HYDRA_FULL_ERROR=1 asked for it."""
    if os.environ.get(_TRACEBACK_ENV) == "1":
        import traceback

        traceback.print_exc()
    exit_with(str(exc), exc.exit_code)


class CheckBeforeWriting(Callback):
    """Checks a single run before Hydra writes anything into its run dir (``.hydra/``, ``train.log``): the config,
    whether the dir already holds a run (only its ``resume=auto`` continuation with the same config may write
    there, and then Hydra does not rewrite its ``.hydra/``), whether the dir can be created; then locks the dir
    for this process. A mistake aimed at a finished run (``hydra.run.dir=<run> strategy.lr=-1``) leaves it
    byte-identical. The task checks the config again (multirun jobs are checked there only, each in a new dir)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from tl_lightning.compose import task_config
        from tl_lightning.rundir import check_resume_path, check_reuse, launched_rank, lock_run_dir, make_run_dir

        try:
            registered, run_dir = registered_copy(config)
            asked = copy.deepcopy(registered)
            with read_write(asked), open_dict(asked):
                del asked["hydra"]
            task_config(registered, run_dir)
            check_resume_path(asked.get("resume"), run_dir)
            if launched_rank() > 0:  # a DDP child or a further Slurm task: rank 0 owns and has locked the dir
                return
            if check_reuse(run_dir, asked):
                with read_write(config.hydra), open_dict(config.hydra):
                    config.hydra.output_subdir = None  # resume=auto: the run's own .hydra/ stays as it was
            make_run_dir(run_dir)
            lock_run_dir(run_dir)
        except TLError as exc:  # Hydra turns a callback's exception into a warning and goes on: stop here
            _stop_in_callback(exc)


class CheckSweep(Callback):
    """Before a multirun starts: the sweep dir can be created and is this sweep's alone (locked; its jobs' dirs
    hold no runs unless ``resume=auto`` continues them), and every interval of the search space (Optuna's
    ``hydra.sweeper.params`` and sweeps on the command line) has low < high, and low > 0 on a log scale."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from tl_lightning.rundir import check_sweep_reuse, lock_run_dir, make_run_dir

        try:
            check_search_space(config)
            sweep_dir = os.path.abspath(config.hydra.sweep.dir)
            make_run_dir(sweep_dir, "sweep dir")
            lock_run_dir(sweep_dir)  # a second sweep into this dir would rewrite its jobs' .hydra/ and failed.json
            check_sweep_reuse(sweep_dir, config.hydra.overrides.task,
                              "tl_lightning_launcher" in str(OmegaConf.select(config, "hydra.launcher._target_") or ""))
        except TLError as exc:
            _stop_in_callback(exc)


def check_search_space(config: DictConfig) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    from tl_lightning.errors import ConfigError

    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    specs = [(f"hydra.sweeper.params.{k}", f"{k}={v}") for k, v in params.items() if v is not None]
    specs += [(o.split("=", 1)[0], o) for o in config.hydra.overrides.task]
    parser = OverridesParser.create()
    for where, spec in specs:
        try:
            value = parser.parse_override(spec).value()
        except Exception:  # not parseable here: Hydra reports it with its own message
            continue
        if not isinstance(value, IntervalSweep):
            continue
        low, high = value.start, value.end
        if low >= high:
            raise ConfigError(f"{where}: interval({low}, {high}) is empty; the low end must be below the high end")
        if "log" in value.tags and low <= 0:
            raise ConfigError(f"{where}: a log-scale interval must start above 0, got interval({low}, {high}); "
                              "e.g. tag(log, interval(1e-5, 1e-2))")


def task(cfg: DictConfig) -> Optional[float]:
    """The Hydra task function: returns the optimized metric for sweepers.

    A user mistake ends a single run here with one line and status 2 (SystemExit passes
    through Hydra's job runner, which would otherwise add lines of its own). In a
    multirun, a failing job is recorded in its dir (failed.json) and the sweep goes on.
    """
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        return _run_task(cfg)
    except Interrupted as exc:  # Ctrl-C / SIGTERM: the whole sweep stops too
        saved = f"saved {exc.saved}; " if exc.saved else "no checkpoint yet; "
        exit_with(f"{exc}; {saved}continue with: {resume_command()}", exc.exit_code, exc.label)
    except TLError as exc:
        if os.environ.get(_TRACEBACK_ENV) == "1":
            raise
        if not multirun:
            exit_with(str(exc), exc.exit_code)
        from tl_lightning.errors import RunDirInUse

        _record_failure(str(exc), in_its_dir=not isinstance(exc, RunDirInUse))  # a dir in use is another job's
    except Exception as exc:
        if not multirun:
            raise
        log.exception("job failed")
        _record_failure(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
    return None  # sweepers record a failed job (Optuna: a FAIL trial)


def _record_failure(message: str, in_its_dir: bool = True) -> None:
    hydra_cfg = HydraConfig.get()
    job = f"job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)})"
    print(f"error: {job}: {message}", file=sys.stderr, flush=True)
    FAILED_JOBS.append(f"{job}: {message}")
    if not in_its_dir:
        return
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


def share_cores(cfg: DictConfig, hydra_cfg) -> None:
    """Jobs run side by side on this machine (hydra/launcher=parallel, the joblib launcher's n_jobs): each takes
    its share of the cores for torch's threads, so the jobs do not oversubscribe them, and prints epoch lines
    unless callbacks.rich_progress_bar.interactive says otherwise (live bars of several processes in one
    terminal overwrite each other)."""
    launcher = hydra_cfg.get("launcher") or {}
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n_jobs = launcher.get("n_jobs") or 1
    jobs = cores if n_jobs < 0 else min(n_jobs, cores)
    import torch

    threads = max(1, cores // max(1, jobs))
    torch.set_num_threads(threads)
    log.info("%d jobs side by side on %d cores: %d torch thread(s) each", jobs, cores, threads)
    if jobs > 1 and cfg.callbacks.rich_progress_bar.interactive is None:
        cfg.callbacks.rich_progress_bar.interactive = False


def resume_command() -> str:
    """The command that continues this run (a multirun job: as a single run in the job's dir)."""
    import shlex

    hydra_cfg = HydraConfig.get()
    keep = [o for o in hydra_cfg.overrides.task if o.split("=", 1)[0].lstrip("+~") not in ("resume", "hydra.run.dir")]
    program = os.path.basename(sys.argv[0])
    program = f"python {program}" if program.endswith(".py") else program
    return " ".join([program, *map(shlex.quote, keep), shlex.quote(f"hydra.run.dir={hydra_cfg.runtime.output_dir}"),
                     "resume=auto"])


def _run_task(cfg: DictConfig) -> Optional[float]:
    from tl_lightning.rundir import check_resume_path, launched_rank, lock_run_dir

    cfg = validate_config(cfg)
    hydra_cfg = HydraConfig.get()
    output_dir = hydra_cfg.runtime.output_dir
    check_resume_path(cfg.resume, output_dir)
    group = None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        group = Path(hydra_cfg.sweep.dir).name
        _pin_job_for_ddp_children(output_dir)
        if launched_rank() == 0:
            lock_run_dir(output_dir)  # a job's own new dir; a requeued job may meet its earlier self here
    choice = hydra_cfg.runtime.choices.get("backbone", "")
    backbone_choice = f"backbone={choice}" + (f" backbone.name={cfg.backbone.name}" if choice in ("timm", "hf") else "")

    share_cores(cfg, hydra_cfg)
    from tl_lightning.run import train  # heavy imports only after the config is known to be valid

    metrics, summary = train(cfg, output_dir, group=group, backbone_choice=backbone_choice)
    value = metrics.get(cfg.optimized_metric)
    if value is None or math.isnan(value):
        log.warning("%s is %s (diverged or never computed); the job reports no value", cfg.optimized_metric, value)
        value = None
    else:
        from tl_lightning.terminal import metric_text

        log.info("%s = %s; summary in %s", cfg.optimized_metric, metric_text(value), RunLayout(output_dir).summary)
    if launched_rank() == 0:  # one table, from the process that owns the run dir
        from tl_lightning.endofrun import print_train_table

        print_train_table(summary, output_dir)
    return value


def _report_failed_jobs() -> None:
    if FAILED_JOBS:
        print(f"error: {len(FAILED_JOBS)} job(s) of the sweep failed (see failed.json in their dirs):", file=sys.stderr)
        for line in FAILED_JOBS:
            print(f"  {line}", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    """Entry point: user mistakes print one line and exit with status 2."""
    run_app("train", task, after=_report_failed_jobs)
