"""``python -m tl_lightning.predict`` / ``tl-predict``: a checkpoint on new inputs (conf/predict.yaml;
tl_lightning/deploy/predict.py)."""

import logging

from omegaconf import DictConfig

from tl_lightning.cli.common import one_line_errors, run_app

log = logging.getLogger("tl_lightning")


@one_line_errors
def task(cfg: DictConfig) -> None:
    from tl_lightning.config.schema import PredictConf
    from tl_lightning.config.validate import check_positive, validate_tool_config

    cfg = validate_tool_config(cfg, PredictConf)
    for key in ("top_k", "batch_size"):
        check_positive(cfg[key], key, allow_none=False)

    from tl_lightning.deploy.predict import predict
    from tl_lightning.inference import load

    result = predict(load(cfg.ckpt_path), cfg.input, cfg.output, top_k=cfg.top_k, batch_size=cfg.batch_size,
                     num_workers=cfg.num_workers, device=cfg.device, text_column=cfg.text_column,
                     progress=cfg.progress_bar)
    log.info("%d input(s): %d predicted, %d unreadable (listed with the reason) on %s; wrote %s", result["inputs"],
             result["predicted"], result["unreadable"], result["device"], result["output"])


def main() -> None:
    run_app("predict", task)
