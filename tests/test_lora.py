"""strategy=lora (and ia3): per-family target layers, adapter-only checkpoints that reload (merged) to the same logits,
export parity, resume, backbone=checkpoint from adapters, and the bad inputs."""

import json

import pytest
import torch
from torch import nn

from tests.helpers import expect_user_error, train_inprocess
from tl_lightning.backbones.adapters import AdapterSpec, add_adapters, default_targets, merge, resolve_targets
from tl_lightning.errors import ConfigError, WeightsError

LITE0 = ["backbone=efficientnet_lite0", "data=fashion_mnist", "data.samples_per_class=2", "data.eval_per_class=2",
         "data.image_size=32", "data.batch_size=8", "trainer.max_epochs=2", "logger=csv",
         "callbacks.rich_progress_bar.enabled=false", "strategy=lora"]


def _tiny_models():
    import timm
    import torchvision
    from transformers import BertConfig, BertModel

    from tl_lightning.backbones.text_backbones import HFEncoder

    bert = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=16))
    tv_vit = torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=2, num_heads=2,
                                                  hidden_dim=16, mlp_dim=32)
    tv_vit.heads = nn.Identity()
    return {
        "timm_vit": (timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=0, depth=2), torch.randn(2, 3, 32, 32)),
        "torchvision_vit": (tv_vit, torch.randn(2, 3, 32, 32)),
        "bert": (HFEncoder(bert, "mean"), {"input_ids": torch.randint(0, 50, (2, 7)),
                                            "attention_mask": torch.ones(2, 7, dtype=torch.long)}),
        "lite0": (timm.create_model("tf_efficientnet_lite0", num_classes=0), torch.randn(2, 3, 32, 32)),
    }


def test_default_targets_per_family_and_merge_keeps_the_function():
    expected = {
        "timm_vit": ["blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.1.attn.qkv", "blocks.1.attn.proj"],
        "torchvision_vit": ["encoder.layers.encoder_layer_0.self_attention", "encoder.layers.encoder_layer_1.self_attention"],
        "bert": [f"encoder.encoder.layer.{i}.attention.{n}" for i in (0, 1)
                 for n in ("self.query", "self.key", "self.value", "output.dense")],
    }
    for family, (model, inputs) in _tiny_models().items():
        model.eval()
        targets = default_targets(model)
        if family == "lite0":  # 1x1 and 3x3 convolutions, never the depthwise (grouped) ones
            convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
            assert targets and all(convs[t].groups == 1 for t in targets), family
            assert len(targets) == sum(m.groups == 1 for m in convs.values())
        else:
            assert targets == expected[family], family
        names_before = [n for n, _ in model.named_parameters()]
        with torch.no_grad():
            base = model(inputs)
        tuner = add_adapters(model, AdapterSpec(targets, r=2, alpha=4))
        adapters = [p for n, p in model.named_parameters() if "lora_" in n]
        assert adapters and all(p.requires_grad for p in adapters)
        with torch.no_grad():
            assert torch.allclose(model(inputs), base, atol=1e-6), family  # B = 0: the function starts unchanged
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.1)
            adapted = model(inputs)
            assert not torch.allclose(adapted, base, atol=1e-4), family  # the adapters act on the output
            merged = merge(tuner)
            assert torch.allclose(merged(inputs), adapted, atol=1e-5), family
        assert sorted(n for n, _ in merged.named_parameters()) == sorted(names_before), family


def test_target_modules_that_match_nothing_list_the_layers():
    import timm

    model = timm.create_model("resnet10t", num_classes=0)
    assert resolve_targets(model, [r"layer4\.0\.conv2$"], "resnet10t") == ["layer4.0.conv2"]
    with pytest.raises(ConfigError) as info:
        resolve_targets(model, ["attn.qkv"], "resnet10t")
    message = str(info.value)
    assert "'strategy.target_modules'" in message and "matches no layer of resnet10t" in message
    assert "conv1.0" in message and "Conv2d layers" in message
    with pytest.raises(ConfigError, match="not a valid regex"):
        resolve_targets(model, ["layer[1"], "resnet10t")


def test_bad_lora_inputs(tmp_path):
    expect_user_error(LITE0 + ["strategy.target_modules=[nothing_here]"], tmp_path / "a",
                      "matches no layer of efficientnet_lite0", "blocks.0.0.conv_pw")
    expect_user_error(LITE0 + ["strategy.r=0"], tmp_path / "b", "strategy.r", "positive integer")
    expect_user_error(LITE0 + ["backbone.pretrained=false"], tmp_path / "c", "backbone.pretrained=false")
    expect_user_error(LITE0 + ["strategy.layer_decay=0.5"], tmp_path / "d", "strategy.layer_decay")


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("lora") / "run"
    probe = f"+callbacks.extra.logits={{_target_: tests.ddp_probe.SaveProbeLogits, path: {run.parent}/probe.pt}}"
    _, summary = train_inprocess(LITE0 + [probe], run)
    return run, summary


def test_adapter_checkpoint_holds_adapters_and_head_and_reloads_to_the_same_logits(lora_run):
    from omegaconf import OmegaConf

    from tl_lightning.backbones.registry import build_backbone
    from tl_lightning.backbones.weights import weights_digest
    from tl_lightning.inference import load

    run, summary = lora_run
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    keys = list(ckpt["state_dict"])
    assert any(k.startswith("head.") for k in keys) and any("lora_A" in k for k in keys)
    assert all("lora_" in k for k in keys if k.startswith("backbone."))  # no frozen base weight is saved
    adapter = ckpt["tl_lightning"]["adapter"]
    base = build_backbone(OmegaConf.create({"kind": "efficientnet_lite0", "name": "tf_efficientnet_lite0",
                                            "weights": None}), pretrained=True, image_size=32)
    assert adapter["base_digest"] == weights_digest(base) and adapter["r"] == 8
    # what the run reports: a small trainable share and a checkpoint a few percent of the full model's
    assert 0.01 < summary["params"]["trainable_share"] < 0.1
    size = summary["checkpoint"]
    assert size["weights_share"] < 0.1 and size["file_bytes"] < size["full_weights_bytes"] / 5
    probe = torch.load(run.parent / "probe.pt", weights_only=True)
    model = load(str(run / "checkpoints" / "best.ckpt"))  # base + adapters, merged into plain layers
    assert not any("lora_" in n for n, _ in model.named_parameters())
    with torch.no_grad():
        assert torch.allclose(model(probe["inputs"]), probe["logits"], atol=1e-5)


def test_merged_export_parity(lora_run, tmp_path):
    from tests.test_deploy import export_cfg
    from tl_lightning.deploy.export import export
    from tl_lightning.inference import load

    ckpt = lora_run[0] / "checkpoints" / "best.ckpt"
    report = export(load(str(ckpt)), export_cfg(ckpt, tmp_path))
    assert report["passed"] and all(r["max_abs_diff"] < 1e-4 for r in report["parity"].values())


def test_adapters_refuse_other_base_weights(lora_run, tmp_path):
    from tl_lightning.inference import load

    ckpt = torch.load(lora_run[0] / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    ckpt["tl_lightning"]["adapter"]["base_digest"] = "0" * 64
    torch.save(ckpt, tmp_path / "other.ckpt")
    with pytest.raises(WeightsError, match="other weights or version"):
        load(str(tmp_path / "other.ckpt"))


def test_adapter_checkpoint_feeds_backbone_checkpoint(lora_run, tmp_path):
    _, summary = train_inprocess(LITE0[:-1] + ["strategy=linear_probe", "data.augment=none", "trainer.max_epochs=1",
                                               "backbone=checkpoint", f"backbone.path={lora_run[0]}/checkpoints/best.ckpt",
                                               f"paths.cache_dir={tmp_path}/cache"], tmp_path / "probe")
    # the source task (the LoRA run's own head on its own test split) scores as that run did
    assert summary["source"]["acc_before"] == pytest.approx(lora_run[1]["test"]["test/acc"])


def test_lora_resume_ends_like_an_uninterrupted_run(tmp_path):
    args = LITE0 + ["scheduler.name=none", "callbacks.early_stopping.enabled=false", "trainer.deterministic=true"]
    _, full = train_inprocess(args + ["trainer.max_epochs=3"], tmp_path / "full")
    train_inprocess(args, tmp_path / "cut")  # 2 epochs, then resumed for the third
    _, resumed = train_inprocess(args + ["trainer.max_epochs=3", "resume=auto"], tmp_path / "cut")
    assert resumed["started_at"]["epoch"] == 2 and resumed["global_step"] == full["global_step"]
    a, b = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for d in
            (tmp_path / "full", tmp_path / "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["test"] == full["test"]


def test_ia3_checkpoint_holds_scalings_and_reloads_to_the_same_logits(tmp_path):
    from tl_lightning.inference import load

    probe = f"+callbacks.extra.logits={{_target_: tests.ddp_probe.SaveProbeLogits, path: {tmp_path}/probe.pt}}"
    _, summary = train_inprocess([a for a in LITE0 if a != "strategy=lora"] + ["strategy=ia3", probe], tmp_path / "run")
    assert summary["params"]["trainable"] == 12_048 + 1280 * 10 + 10  # one scale per output channel of 33 layers
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["tl_lightning"]["adapter"]["method"] == "ia3"
    assert all("ia3_" in k for k in ckpt["state_dict"] if k.startswith("backbone."))
    saved = torch.load(tmp_path / "probe.pt", weights_only=True)
    with torch.no_grad():
        assert torch.allclose(load(str(tmp_path / "run" / "checkpoints" / "best.ckpt"))(saved["inputs"]), saved["logits"],
                              atol=1e-5)


def test_a_layer_peft_cannot_adapt_is_one_line():
    import torchvision

    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=16,
                                               mlp_dim=32)
    with pytest.raises(ConfigError) as info:  # IA3 has no MultiheadAttention layer
        add_adapters(vit, AdapterSpec(default_targets(vit), method="ia3"))
    assert "\n" not in str(info.value) and "strategy=ia3: peft cannot adapt" in str(info.value)


@pytest.mark.integration
@pytest.mark.xdist_group("ddp")
def test_lora_under_ddp_keeps_ranks_identical(tmp_path):
    from tests.helpers import run_train

    digest = f"+callbacks.extra.digest={{_target_: tests.ddp_probe.WeightDigest, path: {tmp_path / 'dg'}}}"
    proc = run_train(LITE0 + ["trainer=ddp_cpu", digest], tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [(tmp_path / "dg" / f"rank{r}.sha256").read_text().splitlines() for r in (0, 1)]
    assert ranks[0] == ranks[1] and "world=2" in ranks[0][-1]
    assert ranks[0][0].split()[-1] != ranks[0][1].split()[-1]  # the adapters moved between the epochs
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert all("lora_" in k for k in ckpt["state_dict"] if k.startswith("backbone."))
