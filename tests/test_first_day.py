"""The five most common mistakes of a first day (docs/start.md lists them): each is one line, and where it
suggests something, the suggestion is right (what it names composes, or the folder it points at is a dataset)."""

import re

import pytest
from PIL import Image

from tl_lightning.compose import compose_config
from tl_lightning.errors import ConfigError, DataError


def one_line(args, tmp_path):
    with pytest.raises(ConfigError) as info:
        compose_config(args, str(tmp_path / "run"))
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("typo, meant", [("strategy=finetun", "strategy=finetune"),
                                         ("backbone=resnet5", "backbone=resnet50"),
                                         ("data=fashion-mnist", "data=fashion_mnist")])
def test_a_typo_in_a_group_option_suggests_the_option_meant(tmp_path, typo, meant):
    message = one_line([typo], tmp_path)
    assert message.startswith(f"unknown option {typo}; did you mean {meant}? valid: "), message
    compose_config([meant], str(tmp_path / "run"), validate=False)  # the suggestion composes


@pytest.mark.parametrize("wrong, meant", [("data.lr=0.01", "strategy.lr"), ("trainer.lr=1e-3", "strategy.lr"),
                                          ("optimizer.lr=1e-3", "strategy.lr"),
                                          ("data.max_epochs=3", "trainer.max_epochs"),
                                          ("strategy.batch_size=8", "data.batch_size"), ("stratgy=ewc", "strategy")])
def test_a_key_in_the_wrong_group_names_the_group_that_has_it(tmp_path, wrong, meant):
    message = one_line([wrong], tmp_path)
    assert re.search(rf"did you mean {re.escape(meant)}\?$", message), message
    compose_config([meant + "=" + wrong.split("=")[1]], str(tmp_path / "run"), validate=False)


def images(folder, count=4):
    folder.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"{i}.png")


def test_a_data_folder_one_level_too_high_or_too_low_points_at_the_right_one(tmp_path):
    from tl_lightning.data.image_folder import scan_class_folders

    for name in ("boot", "sandal"):
        images(tmp_path / "shoes" / "all" / name)
    with pytest.raises(DataError) as high:
        scan_class_folders(str(tmp_path / "shoes"))
    suggested = re.search(r"looks one level too high: data.root=(\S+) has 2 subfolders", str(high.value))
    assert suggested, high.value
    with pytest.raises(DataError) as low:
        scan_class_folders(str(tmp_path / "shoes" / "all" / "boot"))
    assert re.search(r"it holds 4 images itself and looks one level too low: data.root=(\S+) has 2 subfolders "
                     r"\(boot, sandal\)$", str(low.value)), low.value
    lower = re.search(r"too low: data.root=(\S+) has", str(low.value)).group(1)
    for root in (suggested.group(1), lower):  # both hints name the folder that is the dataset
        _, classes = scan_class_folders(root)
        assert classes == ["boot", "sandal"]
    images(tmp_path / "loose")  # images with no class folders anywhere near: no folder to point at
    with pytest.raises(DataError, match="it holds 4 images itself: put each class's images in a subfolder"):
        scan_class_folders(str(tmp_path / "loose"))


def test_a_missing_dataset_says_where_it_was_looked_for_and_how_to_get_it(tmp_path):
    message = one_line(["data=cifar10", f"paths.data_dir={tmp_path}/nothing"], tmp_path)
    assert message == (f"data.root: {tmp_path}/nothing: no such directory (data=cifar10); data.download=true "
                       "creates it and downloads the data (needs internet)")
    assert one_line(["data=image_folder"], tmp_path) == \
        "data=image_folder needs data.root=<folder of class subfolders, or of train/ val/ test/>"


def test_a_gpu_preset_on_a_cpu_machine_names_the_cpu_presets(tmp_path, monkeypatch):
    monkeypatch.setattr("tl_lightning.config.schema.gpu_visible", lambda: False)
    message = one_line(["trainer=gpu"], tmp_path)
    assert message == ("trainer.accelerator=gpu but this machine has no GPU; use trainer=cpu "
                       "(or trainer=ddp_cpu for two processes)")
    for preset in ("cpu", "ddp_cpu"):  # what it suggests validates on this machine
        assert compose_config([f"trainer={preset}"], str(tmp_path / "run")).trainer.accelerator == "cpu"
