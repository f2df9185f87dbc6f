import math

import pytest
import torch
from omegaconf import OmegaConf

from tl_lightning.backbones import build_backbone
from tl_lightning.config.schema import BackboneConf, OptimizerConf, SchedulerConf, StrategyConf
from tl_lightning.module import TransferModule
from tl_lightning.optim import build_optimizer, cosine_with_warmup
from tl_lightning.strategies import build_strategy


def make_module(strategy_name, lr=1e-3, mult=0.1, optimizer="adamw"):
    bb = OmegaConf.structured(BackboneConf)
    bb.kind, bb.name = "torchvision", "resnet18"
    backbone = build_backbone(bb, pretrained=False, image_size=32)
    st = OmegaConf.structured(StrategyConf)
    st.name, st.lr, st.backbone_lr_mult = strategy_name, lr, mult
    opt = OmegaConf.structured(OptimizerConf)
    opt.name = optimizer
    return TransferModule(backbone, 3, build_strategy(st), opt, OmegaConf.structured(SchedulerConf))


def train_steps(module, steps=3):
    optimizer = build_optimizer(module.strategy.param_groups(module), module.optimizer_cfg)
    module.train()
    for _ in range(steps):
        x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 3, (4,))
        loss = torch.nn.functional.cross_entropy(module(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_linear_probe_freezes_backbone_weights_and_batchnorm_stats():
    module = make_module("linear_probe")
    before = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    head_before = module.head[1].weight.clone()
    train_steps(module)
    assert not module.backbone.training, "frozen backbone stays in eval mode"
    for k, v in module.backbone.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
    assert not torch.equal(module.head[1].weight, head_before)
    counts = module.parameter_counts()
    assert counts["trainable"] == 512 * 3 + 3 and counts["frozen"] > 11_000_000


def test_finetune_trains_everything_with_backbone_lr_multiplier():
    module = make_module("finetune", lr=1e-3, mult=0.1)
    groups = {g["name"]: g["lr"] for g in module.strategy.param_groups(module)}
    assert groups == {"backbone": pytest.approx(1e-4), "head": 1e-3}
    before = module.backbone.model.conv1.weight.clone()
    train_steps(module)
    assert not torch.equal(module.backbone.model.conv1.weight, before)
    assert module.parameter_counts()["frozen"] == 0


def test_scratch_ignores_pretrained_weights():
    strategy = build_strategy(OmegaConf.create({"name": "scratch", "lr": 1e-3, "backbone_lr_mult": 1.0}))
    assert strategy.uses_pretrained is False


def test_no_weight_decay_on_biases_and_norms():
    module = make_module("finetune", optimizer="sgd")
    optimizer = build_optimizer(module.strategy.param_groups(module), module.optimizer_cfg)
    assert isinstance(optimizer, torch.optim.SGD)
    for group in optimizer.param_groups:
        dims = {p.ndim for p in group["params"]}
        assert (group["weight_decay"] == 0.0) == (dims == {1})


def test_cosine_with_warmup_shape():
    f = cosine_with_warmup(warmup_steps=10, total_steps=110, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(110) == pytest.approx(0.1)
