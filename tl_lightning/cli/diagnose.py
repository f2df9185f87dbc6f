"""``python -m tl_lightning.diagnose rank|gap [key=value ...]`` / ``tl-diagnose``: pick a backbone before
training, or measure the domain gap (conf/diagnose.yaml; tl_lightning/diagnose/run.py). The first word may be
the command (``rank`` or ``gap``); it becomes ``command=<word>``."""

# Imports of tl_lightning inside functions keep start-up fast: the config is checked before torch is imported.

import sys
from typing import List

from omegaconf import DictConfig

from tl_lightning.cli.common import one_line_errors, run_app


def command_word(argv: List[str]) -> List[str]:
    if argv and "=" not in argv[0] and not argv[0].startswith("-"):
        return [f"command={argv[0]}", *argv[1:]]
    return argv


def check(cfg: DictConfig) -> DictConfig:
    """The config merged into its schema and checked, before anything is written."""
    from omegaconf import OmegaConf

    from tl_lightning.config import schema
    from tl_lightning.config.checks import run_checks
    from tl_lightning.config.validate import check_choice, check_positive, merge_into_schema, validate_data
    from tl_lightning.errors import ConfigError

    data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))  # data.seed: ${seed}, resolved here
    cfg.data = None
    merged = merge_into_schema(lambda: _schema(schema.DiagnoseConf), cfg)
    merged.data = validate_data(data)
    check_choice(merged.command, schema.DIAGNOSE_COMMANDS, "command")
    check_choice(merged.split, schema.FEATURE_SPLITS, "split")
    check_choice(merged.reference.kind, schema.REFERENCE_KINDS, "reference.kind")
    check_choice(merged.reference.split, schema.FEATURE_SPLITS, "reference.split")
    run_checks(merged.paths)
    for key in ("max_samples", "permutations", "batch_size"):
        check_positive(merged[key], key, allow_none=False)
    if merged.command == "gap" and merged.max_samples < schema.GAP_MIN_SAMPLES:
        raise ConfigError(f"max_samples={merged.max_samples}: gap needs at least {schema.GAP_MIN_SAMPLES} samples a "
                          "side (its domain classifier is cross-validated 5-fold); the default is 1000")
    if merged.command == "gap" and merged.reference.kind == "source" and merged.backbone.kind != "checkpoint":
        raise ConfigError("reference.kind=source needs backbone=checkpoint backbone.path=<a harness checkpoint that "
                          "records its data config>")
    reference = merged.reference.data
    if merged.command == "gap" and merged.reference.kind == "data" and not reference:
        raise ConfigError("reference.kind=data needs reference.data=<a data option, e.g. digits, or one with "
                          "overrides: {name: image_folder, root: <folder>}>; or reference.kind=source|halves")
    if reference is not None and not isinstance(reference, str) and not (
            OmegaConf.is_dict(reference) and reference.get("name")):
        raise ConfigError(f"config key 'reference.data': a data option or {{name: <option>, <overrides>}}, got "
                          f"{OmegaConf.to_container(reference) if OmegaConf.is_config(reference) else reference!r}")
    if merged.command == "rank":
        from tl_lightning.diagnose.run import parse_candidate

        for spec in merged.backbones:
            parse_candidate(spec)
    return merged


def _schema(schema_type):
    from omegaconf import OmegaConf

    node = OmegaConf.structured(schema_type)
    node.data = None
    return node


@one_line_errors
def task(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    cfg = check(cfg)
    from tl_lightning.diagnose.run import run

    run(cfg, hydra_cfg.runtime.output_dir, hydra_cfg.runtime.choices.get("backbone"))


def main() -> None:
    sys.argv = [sys.argv[0], *command_word(sys.argv[1:])]
    run_app("diagnose", task)
