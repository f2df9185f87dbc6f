"""The composed config: schemas, option files, and every mistake the check catches before torch is imported."""

import sys

import pytest
from omegaconf import OmegaConf

from tests.helpers import EMPTY_ZIP
from tl_lightning.config import group_options, schema
from tl_lightning.config.validate import check_metric_names, validate_config
from tl_lightning.errors import ConfigError

OPTIONS = group_options()


@pytest.mark.parametrize("data", OPTIONS["data"])
def test_every_data_option_validates_with_its_schema(compose, data):
    # a data.root must exist at start-up (unless data.download=true): the torchvision sets' default is ./data
    over = [f"data={data}"] + (["data.root=/tmp"] if data in ("image_folder", "cifar10", "cifar100", "flowers102",
                                                               "food101", "oxford_iiit_pet", "text_folder") else [])
    if data == "text_csv":  # its file must exist
        over.append(f"data.path={__file__}")
    if data == "hf":  # a Hub id (read when the datamodule loads)
        over.append("data.path=beans")
    cfg = validate_config(compose(over))
    assert cfg.data.name == data
    expected = {"synthetic": schema.SyntheticDataConf, "fortunes": schema.FortunesDataConf, "text_csv": schema.TextCsvDataConf,
                "text_folder": schema.TextFolderDataConf, "synthetic_text": schema.SyntheticTextDataConf,
                "image_folder": schema.ImageFolderDataConf, "multi_source": schema.MultiSourceDataConf,
                "fashion_mnist_m": schema.FashionMNISTMDataConf, "hf": schema.HFDataConf}
    assert OmegaConf.get_type(cfg.data) is expected.get(data, schema.ImageDataConf)
    # text data brings its default text backbone (an override in the data option's defaults list)
    text = data in ("fortunes", "text_csv", "text_folder", "synthetic_text")
    assert cfg.backbone.kind == ("minilm" if text else "efficientnet_lite0")


@pytest.mark.parametrize("backbone", OPTIONS["backbone"])
def test_every_backbone_option_validates(compose, backbone, tmp_path):
    from tl_lightning.registry import BACKBONES

    over = [f"backbone={backbone}"] + (["backbone.name=resnet18"] if backbone == "timm" else [])
    if backbone in ("hf", "minilm"):  # text backbones take text data
        over += ["data=fortunes"] + (["backbone.name=distilbert-base-uncased"] if backbone == "hf" else [])
    if backbone == "checkpoint":  # validation checks that the file exists
        (tmp_path / "best.ckpt").write_bytes(EMPTY_ZIP)
        over.append(f"backbone.path={tmp_path / 'best.ckpt'}")
    cfg = validate_config(compose(over))
    assert cfg.backbone.kind in BACKBONES.names()


@pytest.mark.parametrize("group", ["strategy", "loss", "trainer", "logger", "callbacks", "experiment", "debug"])
def test_every_option_of_other_groups_validates(compose, group, tmp_path, monkeypatch):
    monkeypatch.setattr("tl_lightning.config.schema.gpu_visible", lambda: True)  # trainer=gpu|ddp as on a GPU box
    source = tmp_path / "best.ckpt"  # experiment=split_fashion starts from a source run's checkpoint
    source.write_bytes(EMPTY_ZIP)
    for option in OPTIONS[group]:
        extra = [f"backbone.path={source}"] if option in ("split_fashion", "multi_source_fashion") else []
        extra += ["data.shortcut.kind=tint"] if option == "group_dro" else []  # Group DRO needs groups
        cfg = validate_config(compose([f"{group}={option}", *extra]))
        if group == "strategy":
            assert cfg.strategy.name == option


def test_registries_match_config_files():
    """Each option file has its entry, registered by its own file of the package (found by discovery)."""
    from tl_lightning.registry import CRITERIA, DATAMODULES, STRATEGIES

    assert set(DATAMODULES.names(discover=True)) == set(OPTIONS["data"])
    assert set(STRATEGIES.names(discover=True)) == set(OPTIONS["strategy"])
    assert set(CRITERIA.names(discover=True)) == set(OPTIONS["loss"])


def test_config_check_imports_no_torch():
    import subprocess

    code = ("import sys; from tl_lightning.compose import compose_config; compose_config([], '/tmp/x'); "
            "print(sorted(m for m in ('torch', 'lightning', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_option_files_list_only_what_differs_from_their_schema():
    """One source of truth: no option YAML restates a schema default."""
    from pathlib import Path

    from tl_lightning.config import CONFIG_DIR

    restated = []
    for group, node in (("strategy", None), ("data", None), ("trainer", schema.TrainerConf),
                        ("backbone", schema.BackboneConf), ("loss", schema.LossConf)):
        for path in sorted((Path(CONFIG_DIR) / group).glob("*.yaml")):
            own = OmegaConf.load(path)
            names = [d for d in own.get("defaults", []) if isinstance(d, str) and d.startswith("schema")]
            base_node = node
            if names:
                from hydra.core.config_store import ConfigStore

                base_node = ConfigStore.instance().load(f"{group}/{names[0]}.yaml").node
            base = OmegaConf.structured(base_node) if not isinstance(base_node, type(own)) else base_node
            defaults = OmegaConf.to_container(base, resolve=False)
            for key, value in OmegaConf.to_container(own, resolve=False).items():
                if key != "defaults" and key in defaults and defaults[key] == value:
                    restated.append(f"{group}/{path.name}: {key}")
    assert not restated, restated


def test_help_groups_come_from_the_option_files():
    assert OPTIONS["strategy"] == ["ewc", "finetune", "ia3", "l2sp", "linear_probe", "lora", "lp_ft", "progressive",
                                   "protonet", "scratch"]
    assert all(not name.startswith("schema") for options in OPTIONS.values() for name in options)


def test_interpolations_are_resolved(compose):
    cfg = validate_config(compose(["seed=7"]))
    assert cfg.data.seed == 7
    assert cfg.callbacks.model_checkpoint.monitor == "val/acc"


@pytest.mark.parametrize("args,fragments", [
    # composition (Hydra + the schemas)
    (["backbone=resnet51"], ["backbone=resnet51", "did you mean backbone=resnet50?", "valid: "]),
    (["strategy=ewc_typo"], ["strategy=ewc_typo", "linear_probe"]),
    (["data=mnist"], ["data=mnist", "fashion_mnist"]),
    (["trainer.max_epoch=3"], ["trainer.max_epoch"]),
    (["+data.samples_per_clas=3"], ["data.samples_per_clas"]),
    (["data.batch_size=big"], ["data.batch_size"]),
    (["trainer.max_epochs=many"], ["trainer.max_epochs"]),
    (["+data.num_classes=3"], ["data.num_classes"]),  # a key of data=synthetic only
    (["data=synthetic", "+data.augmentation=none"], ["data.augmentation"]),
    (["strategy=finetune", "strategy.alpha=0.1"], ["strategy.alpha"]),  # a key of l2sp only
    # values (validate_config)
    (["data.augment=heavy"], ["data.augment", "none, basic, strong"]),
    (["optimizer.name=lamb"], ["optimizer.name", "adamw, sgd"]),
    (["scheduler.name=step"], ["scheduler.name"]),
    (["data.val_fraction=1.5"], ["data.val_fraction"]),
    (["data.samples_per_class=0"], ["data.samples_per_class"]),
    (["strategy.lr=-1"], ["strategy.lr"]),
    (["loss.label_smoothing=1.2"], ["loss.label_smoothing"]),
    (["strategy.name=ewc_typo"], ["unknown strategy 'ewc_typo'", "ewc, finetune, ia3, l2sp, linear_probe, lora, lp_ft"]),
    (["strategy=progressive", "scheduler.name=onecycle"], ["use scheduler.name=cosine or none"]),
    (["strategy=progressive", "strategy.schedule=weekly"], ["strategy.schedule", "epochs, plateau, phases"]),
    (["strategy=progressive", "strategy.schedule=phases"], ["strategy.schedule=phases needs strategy.phases"]),
    (["strategy=progressive", "strategy.phases=[{group: [layer4]}]"], ["strategy.phases[0]", "expected a mapping"]),
    (["strategy=lp_ft", "strategy.lp_epochs=null"], ["needs strategy.lp_epochs or strategy.lp_patience"]),
    (["strategy=lp_ft", "strategy.ft_head_lr=0"], ["strategy.ft_head_lr", "positive"]),
    (["trainer.devices=abc"], ["trainer.devices", "'abc' is not valid", "auto"]),
    (["trainer.devices=0"], ["trainer.devices", "a count >= 1"]),
    (["trainer.precision=17"], ["trainer.precision", "'17' is not valid", "bf16-mixed"]),
    (["trainer.compile=tensorrt"], ["trainer.compile", "'tensorrt' is not valid", "true (inductor), inductor, aot_eager, eager"]),
    (["trainer.max_epochs=0"], ["trainer.max_epochs", "must be >= 1"]),
    (["trainer.max_epochs=-1"], ["trainer.max_epochs", "trainer.max_steps"]),
    (["trainer.val_check_interval=2.5"], ["trainer.val_check_interval", "(0, 1]", "number of steps"]),
    (["trainer.check_val_every_n_epoch=null", "trainer.val_check_interval=0.5"],
     ["trainer.check_val_every_n_epoch", "integer number of steps", "0.5"]),
    (["data.num_workers=-1"], ["data.num_workers", ">= 0"]),
    (["strategy.backbone_lr_mult=-1"], ["strategy.backbone_lr_mult", ">= 0"]),
    (["strategy=ewc", "strategy.fisher_source=source"], ["fisher_source=source needs backbone=checkpoint"]),
    (["strategy=ewc", "strategy.fisher_source=prior"], ["strategy.fisher_source", "auto, source, target, uniform"]),
    (["strategy=finetune", "strategy.layer_decay=1.5"], ["strategy.layer_decay", "(0, 1]"]),
    (["backbone=checkpoint"], ["backbone.path"]),
    (["backbone=checkpoint", "backbone.path=/nonexistent/best.ckpt"], ["backbone.path: no such file", "/nonexistent"]),
    (["resume=/nonexistent/last.ckpt"], ["resume: no such checkpoint file", "resume=auto"]),
    (["strategy.bn=frozen"], ["strategy.bn", "train, freeze_stats, freeze"]),
    (["strategy=scratch", "strategy.bn=freeze_stats"], ["strategy=scratch learns BatchNorm statistics"]),
    (["strategy=progressive", "strategy.train_bn=true", "strategy.bn=freeze"], ["train_bn=true", "bn=freeze"]),
    (["strategy=lp_ft", "strategy.phase_schedule=cyclic"], ["strategy.phase_schedule", "global, restart"]),
    (["strategy=lp_ft", "strategy.phase_schedule=restart", "scheduler.name=none"], ["needs scheduler.name=cosine"]),
    # issue 26: the probe's fit, recipes, averaging, folds
    (["strategy=linear_probe", "strategy.probe=adam"], ["strategy.probe", "lbfgs, sgd"]),
    (["strategy=linear_probe", "strategy.probe_grid=[]"], ["strategy.probe_grid", "positive C values"]),
    (["strategy=linear_probe", "strategy.probe_grid=[1,-1]"], ["strategy.probe_grid", "positive C values"]),
    (["strategy=linear_probe", "data.augment=basic"], ["strategy.probe=lbfgs", "data.augment=basic", "strategy.probe=sgd"]),
    (["strategy=linear_probe", "strategy.cache_features=false"], ["strategy.cache_features=false", "strategy.probe=sgd"]),
    (["strategy=linear_probe", "data.sampler=balanced"], ["data.sampler=balanced", "loss=class_balanced"]),
    (["strategy=lp_ft", "loss=group_dro", "data.shortcut.kind=tint"], ["strategy.probe=lbfgs", "loss=group_dro"]),
    (["strategy.augment=fancy"], ["strategy.augment", "randaugment"]),
    (["data.augment=randaug"], ["data.augment", "randaugment, autoaugment"]),
    (["backbone.drop_path_rate=1.5"], ["backbone.drop_path_rate", "[0, 1)"]),
    (["backbone=resnet18", "backbone.drop_path_rate=0.1"], ["backbone.drop_path_rate=0.1", "timm backbones"]),
    (["callbacks.weight_averaging.kind=polyak"], ["callbacks.weight_averaging.kind", "ema, swa"]),
    (["callbacks.weight_averaging.decay=1.0"], ["callbacks.weight_averaging.decay", "[0, 1)"]),
    (["callbacks.weight_averaging.enabled=true", "strategy=linear_probe"], ["averages optimizer steps", "probe=sgd"]),
    (["callbacks.weight_averaging.enabled=true", "callbacks.fairness.enabled=true", "callbacks.fairness.action=rollback",
      "data.shortcut.kind=tint"], ["action=rollback", "weight_averaging"]),
    (["callbacks.mixup.enabled=true", "callbacks.mixup.mixup_alpha=0"], ["mixes nothing", "mixup_alpha=0.2"]),
    (["callbacks.mixup.mixup_alpha=-1"], ["callbacks.mixup.mixup_alpha", ">= 0"]),
    (["callbacks.mixup.enabled=true", "data=fortunes"], ["callbacks.mixup mixes images", "data=fortunes is text"]),
    (["callbacks.mixup.enabled=true", "strategy=linear_probe"], ["strategy=linear_probe trains on cached features"]),
    (["data.folds=1"], ["data.folds", "at least 2"]),
    (["data.fold=2"], ["data.fold=2", "data.folds=<K>"]),
    (["data.folds=5", "data.fold=5"], ["data.fold", "0 .. 4"]),
])
def test_mistakes_are_one_line_naming_the_key(args, fragments):
    from tl_lightning.compose import compose_config

    with pytest.raises(ConfigError) as info:
        compose_config(args, "/tmp/tl-test-run")
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_fsdp_on_cpus_is_one_line_naming_what_runs_there(compose, monkeypatch):
    with pytest.raises(ConfigError, match=r"trainer.strategy=fsdp with trainer.accelerator=cpu: Lightning runs FSDP on "
                                          r"CUDA GPUs only; on CPUs use trainer=ddp_cpu"):
        validate_config(compose(["trainer.strategy=fsdp", "trainer.devices=2"]))
    monkeypatch.setattr("tl_lightning.config.schema.gpu_visible", lambda: True)
    assert validate_config(compose(["trainer=gpu", "trainer.strategy=fsdp"])).trainer.strategy == "fsdp"


@pytest.mark.parametrize("trainer", ["gpu", "ddp"])
def test_gpu_trainer_on_a_machine_without_gpu_is_one_line(compose, monkeypatch, trainer):
    monkeypatch.setattr("tl_lightning.config.schema.gpu_visible", lambda: False)
    with pytest.raises(ConfigError, match=r"trainer.accelerator=gpu but this machine has no GPU; use trainer=cpu"):
        validate_config(compose([f"trainer={trainer}"]))
    monkeypatch.setattr("tl_lightning.config.schema.gpu_visible", lambda: True)
    assert validate_config(compose([f"trainer={trainer}"])).trainer.accelerator == "gpu"
    for devices in ("[0,1]", "'0,1'", "-1", "auto", "3"):  # what Lightning accepts passes
        assert validate_config(compose([f"trainer={trainer}", f"trainer.devices={devices}"]))


def test_scratch_cannot_start_from_a_checkpoint(compose, tmp_path):
    (tmp_path / "best.ckpt").write_bytes(EMPTY_ZIP)
    with pytest.raises(ConfigError, match="strategy=scratch starts from random weights"):
        validate_config(compose(["strategy=scratch", "backbone=checkpoint", f"backbone.path={tmp_path / 'best.ckpt'}"]))


def test_any_logged_metric_may_be_monitored_and_others_are_refused(compose):
    logged = {"val/acc", "val/f1_macro", "val/loss", "val/acc_class/Bag", "train/ewc", "test/acc"}
    for metric in ("val/f1_macro", "val/acc_class/Bag", "train/ewc"):
        check_metric_names(validate_config(compose([f"optimized_metric={metric}"])), logged)
    with pytest.raises(ConfigError, match=r"'optimized_metric': 'val/accuracy' is not a metric this run logs; "
                                          r"valid: test/acc, train/ewc, val/acc, val/f1_macro, val/loss"):
        check_metric_names(validate_config(compose(["optimized_metric=val/accuracy"])), logged)
    with pytest.raises(ConfigError, match=r"callbacks\.early_stopping\.monitor"):
        check_metric_names(validate_config(compose(["callbacks.early_stopping.monitor=val/top5"])), logged)
    # a switched-off callback's monitor is not checked
    check_metric_names(validate_config(compose(["callbacks.early_stopping.monitor=val/top5",
                                                "callbacks.early_stopping.enabled=false"])), logged)
