"""Lightning loggers from the ``logger`` config group; W&B runs are always finished."""

import logging
import os
from typing import Any, Dict, List, Optional

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

from tl_lightning.rundir import launched_rank


def wandb_mode_offline(offline: bool) -> bool:
    """Offline unless asked for online by config or by WANDB_MODE=online."""
    return offline and os.environ.get("WANDB_MODE", "").lower() != "online"


def wandb_run_id(output_dir: str, resuming: bool) -> str:
    """One W&B run per run dir: a resumed run (resume=auto, a Slurm requeue) continues the same run id."""
    import secrets

    from lightning.pytorch.utilities import rank_zero_only

    path = os.path.join(output_dir, "wandb_run_id")
    if resuming and os.path.isfile(path):
        with open(path) as fh:
            return fh.read().strip()
    run_id = secrets.token_hex(4)  # W&B accepts [a-z0-9] ids
    if rank_zero_only.rank == 0:
        os.makedirs(output_dir, exist_ok=True)
        with open(path, "w") as fh:
            fh.write(run_id)
    return run_id


def build_loggers(cfg, output_dir: str, run_config: Dict[str, Any], group: Optional[str], run_name: str,
                  resuming: bool = False) -> List[Logger]:
    loggers: List[Logger] = []
    if cfg.wandb is not None:
        import wandb

        w = cfg.wandb
        offline = wandb_mode_offline(w.offline)
        logger = WandbLogger(
            id=wandb_run_id(output_dir, resuming), resume="allow",
            project=w.project, entity=w.entity, name=w.name or run_name, group=w.group or group,
            tags=list(w.tags) or None, offline=offline, save_dir=output_dir,
            log_model=w.log_model, job_type=w.job_type, config=run_config,
            # quiet: no run history and summary block when the run ends (the end-of-run table has the results);
            # offline, silent too: W&B's three header lines become one row of that table (where, how to upload)
            settings=wandb.Settings(quiet=True, silent=offline),
        )
        # Lightning always passes anonymous=None, which wandb >= 0.19 warns about at every run ("has no effect")
        logger._wandb_init.pop("anonymous", None)
        loggers.append(logger)
    if cfg.csv is not None:
        loggers.append(CSVLogger(save_dir=output_dir, name=cfg.csv.name, version=""))
    if cfg.tensorboard is not None:
        loggers.append(TensorBoardLogger(save_dir=output_dir, name=cfg.tensorboard.name, version=""))
    return loggers


def log_lines_once() -> None:
    """The ``lightning`` package gives its logger a console handler of its own and still propagates to the root
    logger, which Hydra has given a console (and a file) handler: every Lightning INFO line came out twice. Once
    Hydra has configured logging, Lightning's lines go through Hydra's handlers only. A DDP child or a further
    Slurm task logs the harness's warnings only (rank 0 prints its INFO lines)."""
    import lightning  # noqa: F401  (adds its handler on import)

    if logging.getLogger().handlers:
        own = logging.getLogger("lightning")
        for handler in list(own.handlers):
            own.removeHandler(handler)
    if launched_rank() > 0:
        logging.getLogger("tl_lightning").setLevel(logging.WARNING)


def finish_wandb() -> None:
    """Close the active W&B run (if any) so the next multirun job starts a new one."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        try:
            wandb.finish()
        except Exception as exc:  # e.g. the service is gone when Slurm stops the job: keep the original exit
            logging.getLogger(__name__).warning("wandb.finish failed: %s: %s", type(exc).__name__, exc)
