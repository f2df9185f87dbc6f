from pathlib import Path

import pytest

from tl_lightning.config import schema
from tl_lightning.config.validate import validate_config
from tl_lightning.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("data", options("data"))
def test_every_data_option_validates(compose, data):
    over = [f"data={data}"] + (["data.root=/tmp"] if data == "image_folder" else [])
    cfg = validate_config(compose(over))
    assert cfg.data.name == data


@pytest.mark.parametrize("backbone", options("backbone"))
def test_every_backbone_option_validates(compose, backbone, tmp_path):
    over = [f"backbone={backbone}"] + (["backbone.name=resnet18"] if backbone == "timm" else [])
    if backbone == "checkpoint":  # validation checks that the file exists
        (tmp_path / "best.ckpt").write_bytes(b"")
        over.append(f"backbone.path={tmp_path / 'best.ckpt'}")
    cfg = validate_config(compose(over))
    assert cfg.backbone.kind in schema.BACKBONE_KINDS


@pytest.mark.parametrize("group", ["strategy", "trainer", "logger", "callbacks", "experiment", "debug"])
def test_every_option_of_other_groups_validates(compose, group, tmp_path):
    source = tmp_path / "best.ckpt"  # experiment=split_fashion starts from a source run's checkpoint
    source.write_bytes(b"")
    for option in options(group):
        extra = [f"backbone.path={source}"] if option == "split_fashion" else []
        validate_config(compose([f"{group}={option}", *extra]))


def test_registries_match_schemas_and_config_files():
    from tl_lightning.data.registry import DATAMODULES
    from tl_lightning.strategies import STRATEGIES

    assert set(DATAMODULES) == set(schema.DATA_SCHEMAS) == set(options("data"))
    assert set(STRATEGIES) == set(schema.STRATEGY_SCHEMAS) == set(options("strategy"))


def test_misspelled_key_names_its_full_path(compose):
    with pytest.raises(ConfigError, match=r"data\.samples_per_clas\b"):
        validate_config(compose(["+data.samples_per_clas=3"]))


def test_wrong_type_names_its_full_path(compose):
    with pytest.raises(ConfigError, match=r"trainer\.max_epochs"):
        validate_config(compose(["trainer.max_epochs=many"]))


def test_key_of_another_dataset_is_refused(compose):
    # num_classes belongs to data=synthetic only
    with pytest.raises(ConfigError, match=r"data\.num_classes"):
        validate_config(compose(["+data.num_classes=3"]))


@pytest.mark.parametrize("override,key", [
    ("data.augment=heavy", "data.augment"),
    ("optimizer.name=lamb", "optimizer.name"),
    ("scheduler.name=step", "scheduler.name"),
    ("optimized_metric=val/accuracy", "optimized_metric"),
    ("data.val_fraction=1.5", "data.val_fraction"),
    ("data.samples_per_class=0", "data.samples_per_class"),
    ("strategy.lr=-1", "strategy.lr"),
])
def test_bad_values_name_key_and_valid_choices(compose, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(compose([override]))


def test_unknown_strategy_name_lists_valid_ones(compose):
    with pytest.raises(ConfigError, match="valid: ewc, finetune, l2sp, linear_probe, lp_ft, progressive, scratch"):
        validate_config(compose(["strategy.name=ewc_typo"]))


def test_interpolations_are_resolved(compose):
    cfg = validate_config(compose(["seed=7"]))
    assert cfg.data.seed == 7
    assert cfg.callbacks.model_checkpoint.monitor == "val/acc"
