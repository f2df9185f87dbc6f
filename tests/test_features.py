"""The cached linear probe's feature cache: hit, rebuild on stale / corrupt / unreadable files."""

import pytest
import torch
from omegaconf import OmegaConf

from tl_lightning.backbones.registry import build_backbone
from tl_lightning.config.schema import SyntheticDataConf
from tl_lightning.data import build_datamodule
from tl_lightning.features import FeatureDataModule, load_or_build


@pytest.fixture
def parts():
    backbone = build_backbone(OmegaConf.create({"kind": "torchvision", "name": "resnet18", "weights": None}),
                              pretrained=False, image_size=32)
    data = OmegaConf.merge(OmegaConf.structured(SyntheticDataConf),
                           {"name": "synthetic", "seed": 0, "per_class": 12, "image_size": 32, "augment": "none",
                            "val_fraction": 0.25, "test_fraction": 0.25})
    dm = build_datamodule(data, backbone.preprocessing)
    dm.setup("fit")
    return backbone, dm


def _only_file(cache):
    files = list((cache / "features").glob("*.pt"))
    assert len(files) == 1
    return files[0]


def test_features_are_the_backbone_outputs_and_a_second_load_hits(parts, tmp_path):
    backbone, dm = parts
    tensors, how = load_or_build(backbone, dm, str(tmp_path), batch_size=4)
    assert how == "miss"
    assert backbone.training, "extraction gives the backbone its mode back"
    backbone.eval()
    batch = next(iter(dm.plain_loader("val", batch_size=len(dm.datasets["val"]))))
    with torch.no_grad():
        assert torch.allclose(tensors["val_x"], backbone(batch["inputs"]), atol=1e-5)
    assert torch.equal(tensors["val_target"], batch["target"]) and torch.equal(tensors["val_index"], batch["index"])
    assert len(tensors["train_target"]) == len(dm.datasets["train"])
    again, how = load_or_build(backbone, dm, str(tmp_path), batch_size=4)
    assert how == "hit" and all(torch.equal(again[k], tensors[k]) for k in tensors)
    fdm = FeatureDataModule(tensors, dm)
    assert fdm.num_classes == dm.num_classes and len(fdm.train_dataloader().dataset) == len(dm.datasets["train"])
    feature_batch = next(iter(fdm.val_dataloader()))
    assert set(feature_batch) == {"inputs", "target", "index", "group"}
    assert torch.equal(feature_batch["inputs"], tensors["val_x"][:len(feature_batch["target"])])


def test_other_weights_get_another_cache_entry(parts, tmp_path):
    backbone, dm = parts
    load_or_build(backbone, dm, str(tmp_path), batch_size=4)
    with torch.no_grad():
        next(backbone.parameters()).add_(1.0)
    _, how = load_or_build(backbone, dm, str(tmp_path), batch_size=4)
    assert how == "miss" and len(list((tmp_path / "features").glob("*.pt"))) == 2


def test_stale_corrupt_and_unreadable_files_are_rebuilt(parts, tmp_path):
    backbone, dm = parts
    tensors, _ = load_or_build(backbone, dm, str(tmp_path), batch_size=4)
    path = _only_file(tmp_path)
    blob = torch.load(path, weights_only=True)

    stale = {**blob, "key": {**blob["key"], "transform": "something else"}}
    torch.save(stale, path)
    _, how = load_or_build(backbone, dm, str(tmp_path), batch_size=4)
    assert how == "stale (key differs)"

    corrupt = {**blob, "tensors": {**blob["tensors"], "train_x": blob["tensors"]["train_x"] + 1e-3}}
    torch.save(corrupt, path)
    rebuilt, how = load_or_build(backbone, dm, str(tmp_path), batch_size=4)
    assert how == "corrupt (checksum differs)"
    assert torch.allclose(rebuilt["train_x"], tensors["train_x"])

    path.write_bytes(path.read_bytes()[:100])
    _, how = load_or_build(backbone, dm, str(tmp_path), batch_size=4)
    assert how.startswith("unreadable")
    _, how = load_or_build(backbone, dm, str(tmp_path), batch_size=4)
    assert how == "hit"  # the rebuilt file is good
