"""Datamodules: the batch shape, the backbone's preprocessing on every split, splits, budgets, duplicates, modality mismatch."""

import os

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import write_fashion_root, write_image_tree
from tl_lightning.backbones.preprocessing import ImagePreprocessing, InputSpec
from tl_lightning.batch import KEYS
from tl_lightning.config.schema import ImageDataConf as DataConf
from tl_lightning.config.schema import SyntheticDataConf
from tl_lightning.data import build_datamodule
from tl_lightning.data.fashion_mnist import DEBIAN_DIR
from tl_lightning.errors import DataError

SPEC = InputSpec(size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
PREP = ImagePreprocessing(SPEC)


def data_cfg(name, schema=DataConf, **kw):
    cfg = OmegaConf.structured(schema)
    cfg.name = name
    for k, v in kw.items():
        cfg[k] = v
    return cfg


def setup(name, schema=DataConf, spec=SPEC, **kw):
    dm = build_datamodule(data_cfg(name, schema, **kw), ImagePreprocessing(spec))
    dm.setup("fit")
    return dm


def test_debian_fashion_mnist_budget_and_disjoint_splits():
    assert os.path.isfile(os.path.join(DEBIAN_DIR, "train-images-idx3-ubyte.gz")), "make data installs it"
    dm = setup("fashion_mnist", samples_per_class=5, eval_per_class=7, seed=3)
    assert dm.num_classes == 10 and dm.class_names[0] == "T-shirt/top"
    assert dm.split_info["class_counts"]["train"] == [5] * 10
    assert dm.split_info["class_counts"]["val"] == [7] * 10
    assert dm.split_info["class_counts"]["test"] == [7] * 10
    train, val = dm.datasets["train"], dm.datasets["val"]
    assert train.source is val.source and not set(train.indices) & set(val.indices)
    item = train[0]
    assert item["inputs"].shape == (3, 16, 16) and item["inputs"].dtype == torch.float32
    assert item["target"] == int(train.targets[0]) and item["index"] == int(train.indices[0]) and item["group"] == -1


def test_split_is_seeded():
    a = setup("fashion_mnist", samples_per_class=5, eval_per_class=5, seed=1).split_info["fingerprint"]
    b = setup("fashion_mnist", samples_per_class=5, eval_per_class=5, seed=1).split_info["fingerprint"]
    c = setup("fashion_mnist", samples_per_class=5, eval_per_class=5, seed=2).split_info["fingerprint"]
    assert a == b != c


def test_fashion_from_root_and_label_out_of_range(tmp_path):
    root = write_fashion_root(tmp_path / "ok")
    assert setup("fashion_mnist", root=root, val_fraction=0.2).split_info["sizes"]["test"] == 20
    bad = write_fashion_root(tmp_path / "bad", bad_label=12)
    with pytest.raises(DataError, match=r"label 12 is out of range; valid labels are 0\.\.9"):
        setup("fashion_mnist", root=bad)


def test_missing_root_is_named(tmp_path):
    with pytest.raises(DataError, match="no such directory: .*nowhere"):
        setup("fashion_mnist", root=str(tmp_path / "nowhere"))


def test_budget_larger_than_a_class(tmp_path):
    with pytest.raises(DataError, match=r"samples_per_class=500 but class '0' has only \d+"):
        setup("digits", samples_per_class=500)


def test_class_subset_remaps_labels():
    dm = setup("digits", classes=[5, 6, "7"], image_size=None)
    assert dm.class_names == ["5", "6", "7"] and dm.split_info["kept_class_ids"] == [5, 6, 7]
    assert set(dm.datasets["train"].targets.tolist()) == {0, 1, 2}
    with pytest.raises(DataError, match=r"data.classes: 12 is out of range"):
        setup("digits", classes=[1, 12])


def test_image_folder_split_by_seed(tmp_path):
    root = write_image_tree(tmp_path / "imgs", per_class=10)
    dm = setup("image_folder", root=root, val_fraction=0.2, test_fraction=0.2)
    assert dm.class_names == ["cat", "dog"]
    assert sum(dm.split_info["sizes"].values()) == 20
    x = dm.datasets["train"][0]["inputs"]
    assert x.shape == (3, 16, 16)


def test_image_folder_train_val_test_layout(tmp_path):
    for seed, split in enumerate(("train", "val", "test")):
        write_image_tree(tmp_path / "ds" / split, per_class=4, seed=seed)
    dm = setup("image_folder", root=str(tmp_path / "ds"))
    assert dm.split_info["sizes"] == {"train": 8, "val": 8, "test": 8}


def test_image_folder_empty_class(tmp_path):
    root = write_image_tree(tmp_path / "imgs")
    os.makedirs(os.path.join(root, "zebra"))
    with pytest.raises(DataError, match=r"class folder .*zebra has no images"):
        setup("image_folder", root=root)


def test_image_folder_non_image_file(tmp_path):
    root = write_image_tree(tmp_path / "imgs")
    open(os.path.join(root, "dog", "notes.txt"), "w").write("hello")
    with pytest.raises(DataError, match=r"not an image file: .*dog/notes\.txt"):
        setup("image_folder", root=root)


def test_image_folder_corrupt_image(tmp_path):
    root = write_image_tree(tmp_path / "imgs")
    with open(os.path.join(root, "cat", "3.png"), "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match=r"corrupt or unreadable image .*cat/3\.png"):
        setup("image_folder", root=root, val_fraction=0.2, test_fraction=0.2)


def test_torchvision_dataset_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"data=cifar10: no usable copy under .*data\.download=true"):
        setup("cifar10", root=str(tmp_path))


def test_torchvision_download_offline_fails_fast(tmp_path):
    import time

    dm = build_datamodule(data_cfg("cifar10", root=str(tmp_path), download=True), PREP)
    start = time.time()
    with pytest.raises(DataError, match="unreachable"):
        dm.prepare_data()
    assert time.time() - start < 10


def test_grayscale_becomes_three_channels_and_is_normalised():
    dm = setup("synthetic", SyntheticDataConf, channels=1, per_class=10)
    ds = dm.datasets["val"]
    x = ds[0]["inputs"]
    assert x.shape == (3, 16, 16)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    raw = torch.as_tensor(ds.source.sample(int(ds.indices[0])), dtype=torch.float32)[..., 0]  # 32 px, one channel
    expected = (torch.nn.functional.interpolate(raw[None, None] / 255, size=16, mode="bilinear", antialias=True)[0, 0]
                - 0.5) / 0.25
    assert torch.allclose(x[0], expected, atol=0.02), "resized to the spec's size and normalised with its mean/std"


@pytest.mark.parametrize("augment", ["none", "basic", "strong"])
def test_augment_presets_keep_the_input_spec(augment):
    dm = setup("synthetic", SyntheticDataConf, augment=augment, per_class=10)
    train = dm.datasets["train"]
    torch.manual_seed(0)
    first, second = train[0]["inputs"], train[0]["inputs"]
    assert first.shape == (3, 16, 16) and torch.isfinite(first).all()
    plain = train.with_transform(dm.preprocessing.transform(train=False))[0]["inputs"]
    if augment == "none":
        assert torch.equal(first, second) and torch.equal(first, plain) and dm.train_is_deterministic
    else:
        assert not torch.equal(first, second) and not dm.train_is_deterministic


def test_the_backbone_preprocessing_feeds_every_split_and_modalities_must_match():
    from tl_lightning.errors import ConfigError

    dm = setup("synthetic", SyntheticDataConf, per_class=10, augment="basic")
    assert dm.preprocessing is not None and dm.augment == "basic"
    assert repr(dm.datasets["val"].transform) == repr(PREP.transform(train=False))
    assert repr(dm.datasets["train"].transform) == repr(PREP.transform(train=True, augment="basic"))

    class TextPreprocessing:
        modality = "text"

    with pytest.raises(ConfigError, match="data=synthetic holds image samples but the backbone takes text input"):
        build_datamodule(data_cfg("synthetic", SyntheticDataConf), TextPreprocessing())


def test_loaders_yield_the_batch_shape():
    dm = setup("synthetic", SyntheticDataConf, per_class=10, batch_size=4)
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch) == KEYS
    assert batch["inputs"].shape == (4, 3, 16, 16) and batch["group"].tolist() == [-1] * 4
    train = dm.datasets["train"]
    position = {int(i): k for k, i in enumerate(train.indices)}
    for index, target in zip(batch["index"].tolist(), batch["target"].tolist()):
        assert target == int(train.targets[position[index]]), "index is the dataset index of that sample"
