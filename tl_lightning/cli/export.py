"""``python -m tl_lightning.export`` / ``tl-export``: a checkpoint to ONNX or TorchScript, checked against PyTorch
(conf/export.yaml; tl_lightning/deploy/export.py)."""

# Imports of tl_lightning inside functions keep start-up fast: the config is checked before torch is imported.

import logging

from omegaconf import DictConfig

from tl_lightning.cli.common import one_line_errors, run_app

log = logging.getLogger("tl_lightning")


def check(cfg: DictConfig) -> DictConfig:
    from tl_lightning.config.schema import EXPORT_FORMATS, ExportConf
    from tl_lightning.config.validate import check_choice, check_positive, validate_tool_config
    from tl_lightning.errors import ConfigError

    cfg = validate_tool_config(cfg, ExportConf)
    check_choice(cfg.format, EXPORT_FORMATS, "format")
    check_choice(cfg.quantize, (None, "dynamic"), "quantize")
    if cfg.quantize and cfg.format != "onnx":
        raise ConfigError(f"quantize={cfg.quantize} is for format=onnx (onnxruntime's quantiser), not {cfg.format}")
    if cfg.output and cfg.format == "hf":
        check_hf_output(cfg.output)
    elif cfg.output:
        from tl_lightning.rundir import check_output

        check_output(cfg.output, "output", {"the checkpoint": cfg.ckpt_path})
    from tl_lightning.deploy.hub import check_push

    check_push(cfg)  # before anything is written: a push that cannot happen writes nothing
    check_positive(cfg.verify_samples, "verify_samples", allow_none=False)
    if not cfg.verify_batch_sizes or min(cfg.verify_batch_sizes) < 1:
        raise ConfigError(f"config key 'verify_batch_sizes': a list of batch sizes >= 1, got {list(cfg.verify_batch_sizes)}")
    return cfg


def check_hf_output(output: str) -> None:
    """format=hf replaces its output folder: only a folder it wrote before (or a new one), never another folder."""
    import os

    from tl_lightning.errors import ConfigError, is_model_folder

    if os.path.isfile(output):
        raise ConfigError(f"output={output} is a file; format=hf writes a folder: give a new folder's path")
    if os.path.isdir(output) and os.listdir(output) and not is_model_folder(output):
        raise ConfigError(f"output={output} is a folder that holds other files (not a model folder of tl-export "
                          "format=hf), which the export would replace: give a new folder's path")


@one_line_errors
def task(cfg: DictConfig) -> None:
    cfg = check(cfg)

    from tl_lightning.deploy.export import export
    from tl_lightning.endofrun import print_export_table
    from tl_lightning.inference import load

    print_export_table(export(load(cfg.ckpt_path), cfg))


def main() -> None:
    run_app("export", task)
