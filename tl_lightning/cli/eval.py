"""``python -m tl_lightning.eval`` / ``tl-eval``: test a checkpoint (conf/eval.yaml; tl_lightning/deploy/evaluate.py).

Without ``data=<option>``, ``data.<key>=value`` overrides a value of the checkpoint's recorded data config (the
command line is rewritten to Hydra's ``+data.<key>=value``, since ``data`` is empty until the checkpoint is read).
"""

# Imports of tl_lightning inside functions keep start-up fast: the config is checked before torch is imported.

import logging
import sys
from typing import List

from omegaconf import DictConfig

from tl_lightning.cli.common import one_line_errors, run_app

log = logging.getLogger("tl_lightning")


def recorded_data_overrides(argv: List[str]) -> List[str]:
    if any(a.startswith(("data=", "+data=", "++data=")) for a in argv):
        return argv
    return [f"+{a}" if a.startswith("data.") else a for a in argv]


def check(cfg: DictConfig) -> DictConfig:
    """The config merged into its schema and checked (its data once the checkpoint's recorded data is known)."""
    from tl_lightning.config.schema import EVAL_SPLITS, TTA_MODES, EvalConf
    from tl_lightning.config.validate import check_choice, validate_tool_config

    data = cfg.data
    cfg.data = None
    cfg = validate_tool_config(cfg, EvalConf)
    cfg.data = data
    check_choice(cfg.split, EVAL_SPLITS, "split")
    check_choice(cfg.tta, TTA_MODES, "tta")
    return cfg


@one_line_errors
def task(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    cfg = check(cfg)

    from tl_lightning.deploy.evaluate import evaluate
    from tl_lightning.endofrun import print_eval_table

    summary = evaluate(cfg, hydra_cfg.runtime.output_dir, hydra_cfg.runtime.choices.get("data"))
    print_eval_table(summary, hydra_cfg.runtime.output_dir)


def main() -> None:
    sys.argv = [sys.argv[0], *recorded_data_overrides(sys.argv[1:])]
    run_app("eval", task)
