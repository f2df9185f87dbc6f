"""data=multi_source: the union of several datamodules (labels, groups, one head per source), its bad inputs,
and its checkpoint feeding backbone=checkpoint."""

import json

import numpy as np
import pytest
import torch

from tests.helpers import TINY, expect_user_error, train_inprocess

SOURCES = ("++data.sources={a: {name: synthetic, num_classes: 3, per_class: 12}, "
           "b: {name: digits, classes: [0, 1], samples_per_class: 6, eval_per_class: 6}}")
MULTI = [a for a in TINY if not a.startswith("data")] + ["data=multi_source", "data.image_size=32", "data.batch_size=8",
                                                          SOURCES]


def _datamodule(compose, sources=SOURCES, *extra):
    from tl_lightning.backbones.preprocessing import ImagePreprocessing, InputSpec
    from tl_lightning.config.validate import validate_config
    from tl_lightning.data import build_datamodule

    cfg = validate_config(compose(MULTI[:-1] + [sources, *extra]))
    dm = build_datamodule(cfg.data, ImagePreprocessing(InputSpec(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))))
    dm.setup("fit")
    return dm


def test_union_offsets_labels_and_marks_each_source_as_a_group(compose):
    dm = _datamodule(compose)
    assert dm.class_names == ["class0", "class1", "class2", "0", "1"] and dm.group_names == ["a", "b"]
    train = dm.datasets["train"]
    a_train = len(dm.sources["a"].datasets["train"])
    assert (train.sample_groups == np.r_[np.zeros(a_train), np.ones(len(train) - a_train)]).all()
    assert set(train.targets[:a_train]) == {0, 1, 2} and set(train.targets[a_train:]) == {3, 4}
    item = train[a_train]  # the first digit: its label offset past source a's three classes
    assert item["group"] == 1 and item["target"] in (3, 4) and item["index"] == a_train
    assert dm.task.class_masks.tolist() == [[True, True, True, False, False], [False, False, False, True, True]]
    assert dm.task.group_names == ("a", "b") and dm.task.group_attribute is None  # sources are no population slices
    # each source keeps its own settings: digits' 6 labels per class, the shared 32 px image size
    assert dm.split_info["sources"]["b"]["class_counts"]["train"] == [6, 6]
    assert tuple(item["inputs"].shape) == (3, 32, 32)
    logits = dm.task.restrict(torch.zeros(2, 5), torch.tensor([0, 1]))
    assert torch.softmax(logits, -1)[0, 3:].sum() == 0 and torch.softmax(logits, -1)[1, :3].sum() == 0


def test_clashing_class_names_and_bad_sources(compose, tmp_path):
    clash = ("++data.sources={a: {name: synthetic, num_classes: 2, per_class: 12}, "
             "b: {name: synthetic, num_classes: 3, per_class: 12}}")
    expect_user_error(MULTI[:-1] + [clash], tmp_path / "a", "class 'class0' is in both 'a' and 'b'",
                      "data.prefix_classes=true")
    dm = _datamodule(compose, clash, "data.prefix_classes=true")
    assert dm.class_names == ["a:class0", "a:class1", "b:class0", "b:class1", "b:class2"]
    expect_user_error(MULTI[:-1] + ["++data.sources={a: {name: nope}}"], tmp_path / "b", "data.sources.a", "nope")
    expect_user_error(MULTI[:-1] + ["++data.sources={a: {name: digits, samples_per_class: -1}}"], tmp_path / "c",
                      "data.sources.a", "samples_per_class")
    expect_user_error(MULTI[:-1], tmp_path / "d", "needs data.sources")


def test_multi_source_checkpoint_feeds_backbone_checkpoint(tmp_path):
    _, source = train_inprocess(MULTI, tmp_path / "source")
    assert source["class_names"] == ["class0", "class1", "class2", "0", "1"]
    _, target = train_inprocess(TINY + ["strategy=linear_probe", "backbone=checkpoint", "data.augment=none",
                                        f"backbone.path={tmp_path}/source/checkpoints/best.ckpt",
                                        f"paths.cache_dir={tmp_path}/cache"], tmp_path / "target")
    assert target["backbone"] == "resnet18" and target["source"]["classes"] == source["class_names"]
    # the source task is scored as the source run scored it (one head per source) and a probe forgets nothing
    assert target["source"]["acc_before"] == pytest.approx(source["test"]["test/acc"])
    assert target["source"]["forgetting"] == 0.0
    assert json.loads((tmp_path / "target" / "summary.json").read_text())["class_names"] == [f"class{i}" for i in range(4)]
    # tl-eval on the run's own data scores it the same way (one head per source)
    from tests.test_deploy import tool_config
    from tl_lightning.deploy.evaluate import evaluate

    cfg = tool_config("eval", [f"ckpt_path={tmp_path}/source/checkpoints/best.ckpt", "logger=none"], tmp_path / "eval")
    assert evaluate(cfg, str(tmp_path / "eval"))["test"]["test/acc"] == pytest.approx(source["test"]["test/acc"])


def test_a_source_without_plus_says_how_to_add_it(compose):
    from tl_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.sources is a mapping; .*'\+data.sources.<name>="):
        compose(MULTI[:-1] + ["data.sources={a: {name: digits}}"])


def test_group_balanced_sampling_draws_each_source_equally_often(compose):
    dm = _datamodule(compose, SOURCES, "data.sampler=group_balanced")
    train = dm.datasets["train"]
    assert np.bincount(train.sample_groups).tolist() == [len(train) - 12, 12]  # in proportion: a's 3x12-ish, b's 12
    drawn = np.asarray(list(dm.train_dataloader().sampler))
    share = np.bincount(train.sample_groups[drawn], minlength=2) / len(drawn)
    assert abs(share[0] - 0.5) < 0.1, share  # balanced: half of the draws from the smaller source
