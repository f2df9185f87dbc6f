"""Compose conf/train.yaml outside of `train.py` (scripts, benchmarks, tests), resolving Hydra's own
interpolations; a composition error is the same one-line ConfigError train.py prints."""

# Imports of tl_lightning inside functions keep start-up fast: the config is checked before torch is imported.

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from tl_lightning.config import CONFIG_DIR


def compose_config(overrides: Sequence[str] = (), output_dir: str = ".", validate: bool = True,
                   config_name: str = "train") -> DictConfig:
    """The config train.py would build for these overrides (validated unless asked not to), run dir = output_dir.
    ``config_name`` picks another primary config (eval, predict, export: never validated here, their tasks do)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    import tl_lightning.config.schema  # noqa: F401  registers the schemas the option files name
    from tl_lightning.config.suggest import one_line
    from tl_lightning.errors import ConfigError

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        try:
            cfg = compose(config_name, overrides=[f"hydra.run.dir={output_dir}", *overrides], return_hydra_config=True)
        except (HydraException, OmegaConfBaseException) as exc:  # what train.py prints as its one line
            raise ConfigError(one_line(exc)) from None
    return task_config(cfg, str(output_dir), validate and config_name == "train")


def task_config(cfg: DictConfig, output_dir: str, validate: bool = True) -> DictConfig:
    """A config composed with its ``hydra`` node, as the task sees it: the run dir set, Hydra's node registered
    for ``${hydra:...}`` (paths.*) and then removed, validated unless asked not to. Changes ``cfg`` in place."""
    from hydra.core.hydra_config import HydraConfig

    from tl_lightning.config.validate import validate_config

    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = output_dir
        cfg.hydra.runtime.cwd = str(Path.cwd())
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return validate_config(cfg) if validate else cfg
