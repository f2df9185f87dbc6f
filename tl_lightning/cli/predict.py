"""``python -m tl_lightning.predict`` / ``tl-predict``: a checkpoint on new inputs (conf/predict.yaml;
tl_lightning/deploy/predict.py)."""

# Imports of tl_lightning inside functions keep start-up fast: the config is checked before torch is imported.

import glob
import logging
import os

from omegaconf import DictConfig

from tl_lightning.cli.common import one_line_errors, run_app
from tl_lightning.errors import ConfigError

log = logging.getLogger("tl_lightning")


def check(cfg: DictConfig) -> DictConfig:
    from tl_lightning.config.schema import TTA_MODES, PredictConf
    from tl_lightning.config.validate import check_choice, check_positive, validate_tool_config

    cfg = validate_tool_config(cfg, PredictConf)
    for key in ("top_k", "batch_size"):
        check_positive(cfg[key], key, allow_none=False)
    check_choice(cfg.tta, TTA_MODES, "tta")
    from tl_lightning.rundir import check_output

    check_output(cfg.output, "output", {"the checkpoint": cfg.ckpt_path, "the input": cfg.input})
    if not (os.path.exists(cfg.input) or glob.has_magic(cfg.input)):
        raise ConfigError(f"input: no such file or folder: {cfg.input} (a folder, a file, a glob such as "
                          "'imgs/*.png', or a .csv/.tsv/.jsonl of texts)")
    return cfg


@one_line_errors
def task(cfg: DictConfig) -> None:
    cfg = check(cfg)

    from tl_lightning.deploy.predict import predict
    from tl_lightning.inference import load

    result = predict(load(cfg.ckpt_path), cfg.input, cfg.output, top_k=cfg.top_k, batch_size=cfg.batch_size,
                     num_workers=cfg.num_workers, device=cfg.device, text_column=cfg.text_column,
                     progress=cfg.progress_bar, tta=cfg.tta)
    log.info("%d input(s): %d predicted, %d unreadable (listed with the reason) on %s; wrote %s", result["inputs"],
             result["predicted"], result["unreadable"], result["device"], result["output"])


def main() -> None:
    run_app("predict", task)
