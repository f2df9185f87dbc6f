"""What every Hydra entry point shares: one ``error:`` line and exit status 2 for a user mistake (1 for a failed
write or check), tracebacks only with HYDRA_FULL_ERROR=1, Ctrl-C outside training as one line."""

# Imports of tl_lightning inside functions keep start-up fast: the config is checked before torch is imported.

import copy
import functools
import importlib
import os
import sys
from typing import Any, Callable, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from tl_lightning.config import CONFIG_DIR
from tl_lightning.config.suggest import one_line
from tl_lightning.errors import USER_ERROR_EXIT_CODE, TLError

TRACEBACK_ENV = "TL_USER_FULL_ERROR"  # the user's own HYDRA_FULL_ERROR, which run_app overrides


def exit_with(message: str, code: int = USER_ERROR_EXIT_CODE, label: str = "error") -> None:
    print(f"{label}: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def tracebacks_wanted() -> bool:
    return os.environ.get(TRACEBACK_ENV) == "1"


def one_line_errors(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """A task function whose user mistakes end the process with their one line (SystemExit passes through
    Hydra's job runner, which would otherwise add lines of its own)."""

    @functools.wraps(task)
    def wrapped(cfg: DictConfig):
        try:
            return task(cfg)
        except TLError as exc:
            if tracebacks_wanted():
                raise
            exit_with(str(exc), exc.exit_code, exc.label)

    return wrapped


def run_app(config_name: str, task: Callable[[DictConfig], Any], after: Optional[Callable[[], None]] = None) -> None:
    """Run ``task`` as the Hydra app of ``conf/<config_name>.yaml``."""
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    import tl_lightning.config.schema  # noqa: F401  registers the schemas the primary configs name
    from tl_lightning.terminal import quiet_third_party

    quiet_third_party()

    # setdefault: DDP child processes inherit the HYDRA_FULL_ERROR=1 set below, not the user's wish
    os.environ.setdefault(TRACEBACK_ENV, os.environ.get("HYDRA_FULL_ERROR", ""))
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let composition errors reach us instead of Hydra's multi-line report
    hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(task)
    try:
        hydra_main()
    except KeyboardInterrupt:  # Ctrl-C before training started (fit itself stops gracefully)
        exit_with("interrupted (SIGINT) outside training; files written before are unchanged", 130, "stopped")
    except (TLError, HydraException, OmegaConfBaseException) as exc:
        if tracebacks_wanted():
            raise
        exit_with(one_line(exc), getattr(exc, "exit_code", USER_ERROR_EXIT_CODE))
    if after is not None:
        after()


CHECKS = {"eval": "tl_lightning.cli.eval:check", "predict": "tl_lightning.cli.predict:check",
          "export": "tl_lightning.cli.export:check", "diagnose": "tl_lightning.cli.diagnose:check"}


def tool_check(task_name: str) -> Callable[[DictConfig], DictConfig]:
    module, function = CHECKS[task_name].split(":")
    return getattr(importlib.import_module(module), function)


def registered_copy(config: DictConfig):
    """(a copy of ``config`` whose Hydra node is registered, the absolute run dir) for a callback's
    ``on_run_start``: Hydra has not set its node yet there, and ``${hydra:runtime.cwd}`` (paths.*, and through
    them the default run dir) cannot resolve without it. run_job registers the node again later."""
    from hydra.core.hydra_config import HydraConfig

    config = copy.deepcopy(config)
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.runtime.cwd = os.getcwd()
    HydraConfig.instance().set_config(config)
    return config, os.path.abspath(config.hydra.run.dir)


class CheckToolConfig(Callback):
    """eval/predict/export: the config is checked before Hydra creates the run dir or writes ``.hydra/``, so a
    refused command leaves nothing behind."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from tl_lightning.compose import task_config

        try:
            config, run_dir = registered_copy(config)
            keeps_run_dir = config.hydra.output_subdir is not None  # eval, diagnose: a run dir of their own
            asked = task_config(config, run_dir, validate=False)
            task_name = asked.task_name
            tool_check(task_name)(asked)
            if keeps_run_dir:  # never another run's
                from tl_lightning.rundir import check_tool_run_dir

                check_tool_run_dir(run_dir, task_name)
        except TLError as exc:  # Hydra turns a callback's exception into a warning and goes on: stop here
            if tracebacks_wanted():
                import traceback

                traceback.print_exc()
            exit_with(str(exc), exc.exit_code)
