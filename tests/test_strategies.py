"""Strategies as units: layer decay, phases, warmup, BatchNorm modes, schedules, L2-SP / EWC penalties, Fisher."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import tiny_backbone
from tl_lightning.config.schema import BackboneConf, LossConf, OptimizerConf, SchedulerConf, schema_of
from tl_lightning.module import TransferModule
from tl_lightning.optim import build_optimizer, cosine_with_warmup
from tl_lightning.strategies import build_strategy
from tl_lightning.task import TaskDescription

CE = OmegaConf.merge(OmegaConf.structured(LossConf), {"name": "ce"})


def make_module(strategy_name, lr=1e-3, mult=0.1, optimizer="adamw", **strategy_keys):
    """A TransferModule of ``strategy_name`` on a tiny ResNet-shaped backbone (tests/helpers.py), 3 classes."""
    st = OmegaConf.merge(OmegaConf.structured(schema_of("strategy", strategy_name)),
                         {"name": strategy_name, "lr": lr, "backbone_lr_mult": mult, **strategy_keys})
    cfg = OmegaConf.create({"backbone": OmegaConf.structured(BackboneConf), "loss": CE,
                            "optimizer": OmegaConf.structured(OptimizerConf),
                            "scheduler": OmegaConf.structured(SchedulerConf)})
    cfg.optimizer.name = optimizer
    task = TaskDescription(class_names=("a", "b", "c"), class_counts={"train": [4, 4, 4]})
    return TransferModule(tiny_backbone(), task, build_strategy(st), cfg)


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
    assert counts["trainable"] == 16 * 3 + 3 and counts["frozen"] == sum(p.numel() for p in module.backbone.parameters())


def test_finetune_trains_everything_with_backbone_lr_multiplier():
    module = make_module("finetune", lr=1e-3, mult=0.1)
    groups = {g["name"]: g["lr"] for g in module.strategy.param_groups(module)}
    assert list(groups) == ["backbone.stem", "backbone.layer1", "backbone.layer2", "backbone.layer3",
                            "backbone.layer4", "head"]
    assert groups["head"] == 1e-3 and all(v == pytest.approx(1e-4) for k, v in groups.items() if k != "head")
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


def test_layer_decay_shrinks_lr_from_the_top_group_down():
    module = make_module("finetune", lr=1e-3, mult=1.0, layer_decay=0.5)
    lrs = {g["name"]: g["lr"] for g in module.strategy.param_groups(module)}
    assert lrs["backbone.layer4"] == pytest.approx(1e-3)
    assert lrs["backbone.layer3"] == pytest.approx(5e-4)
    assert lrs["backbone.stem"] == pytest.approx(1e-3 * 0.5 ** 4)


def _frozen_state(module):
    return {n: p.requires_grad for n, p in module.backbone.model.named_parameters()}


def _scheduled_lrs(module, step):
    """Each optimizer group's lr at ``step``, as the run's scheduler sets it (schedule 'none')."""
    from tl_lightning.optim import build_scheduler

    optimizer = build_optimizer(module.strategy.param_groups(module), module.optimizer_cfg)
    sched_cfg = OmegaConf.merge(OmegaConf.structured(SchedulerConf), {"name": "none"})
    sched = build_scheduler(optimizer, sched_cfg, 100, 10, group_factor=module.strategy.lr_factor)["scheduler"]
    for _ in range(step):
        optimizer.step()
        sched.step()
    return {g["name"]: g["lr"] for g in optimizer.param_groups}


def test_progressive_unfreezes_top_down_with_discriminative_lr_and_warmup():
    module = make_module("progressive", lr=1e-2, mult=0.1, layer_decay=0.5, warmup_steps=4)
    s = module.strategy
    assert [p.units for p in s.phases] == [[], ["layer4"], ["layer3"], ["layer2"], ["layer1"], ["stem"]]
    assert not any(_frozen_state(module).values()) and all(p.requires_grad for p in module.head.parameters())
    module.train()
    assert not module.backbone.model.layer4[0].bn1.training, "BatchNorm of a frozen group stays in eval mode"
    lrs = _scheduled_lrs(module, 0)
    assert lrs["head"] == pytest.approx(1e-2) and lrs["backbone.layer4"] == 0.0  # frozen: factor 0
    assert s.phase_done(epoch=1) and not s.phase_done(epoch=0)
    s.advance(module, epoch=1, step=10)
    module.train()
    assert module.backbone.model.layer4[0].bn1.training and not module.backbone.model.layer3[0].bn1.training
    trainable = {n.split(".")[0] for n, r in _frozen_state(module).items() if r}
    assert trainable == {"layer4"}
    lrs = _scheduled_lrs(module, 11)  # 2nd step after unfreezing at step 10: warmup 2/4
    assert lrs["backbone.layer4"] == pytest.approx(1e-3 * 2 / 4)
    assert _scheduled_lrs(module, 20)["backbone.layer4"] == pytest.approx(1e-3)
    s.advance(module, epoch=2, step=20)
    assert _scheduled_lrs(module, 30)["backbone.layer3"] == pytest.approx(1e-3 * 0.5)


def test_progressive_frozen_groups_do_not_change_while_unfrozen_ones_do():
    module = make_module("progressive", lr=1e-2, mult=1.0)
    module.strategy.advance(module, epoch=1, step=0)
    before = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    train_steps(module)
    after = module.backbone.state_dict()
    changed = {k.split(".")[1] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"layer4"}, changed  # weights and BN statistics of other groups untouched


def test_progressive_explicit_phases_by_group_name_and_regex():
    phases = [{"groups": [], "max_epochs": 1}, {"groups": ["layer4", r"layer3\.1\."], "lr": 1e-4, "max_epochs": 2},
              {"groups": [r"^layer3"], "patience": 1}]
    module = make_module("progressive", schedule="phases", phases=phases)
    s = module.strategy
    assert [len(p.units) for p in s.phases] == [0, 2, 1]
    lrs = {g["name"]: g["lr"] for g in s.param_groups(module)}
    assert lrs["backbone.p1:layer4"] == 1e-4 and lrs["backbone.p1:layer3\\.1\\."] == 1e-4
    s.advance(module, 1, 0)
    names = {n for n, r in _frozen_state(module).items() if r}
    assert names == {n for n in _frozen_state(module) if n.startswith(("layer4", "layer3.1."))}
    assert not s.phase_done(2) and s.phase_done(3)  # max_epochs=2 from epoch 1
    s.advance(module, 3, 0)
    s.observe(0.5, "max", 0.0)
    assert not s.phase_done(4)  # last phase: runs until the run ends
    assert {n.split(".")[0] for n, r in _frozen_state(module).items() if r} == {"layer3", "layer4"}


@pytest.mark.parametrize("selector", ["nope_[", "no_such_layer"])
def test_progressive_phase_selector_errors(selector):
    from tl_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match="strategy.phases\\[0\\].groups"):
        make_module("progressive", schedule="phases", phases=[{"groups": [selector]}])


def test_progressive_plateau_ends_a_phase():
    module = make_module("progressive", schedule="plateau", patience=2)
    s = module.strategy
    for value in (0.5, 0.6, 0.6):
        s.observe(value, "max", 0.0)
    assert not s.phase_done(5)
    s.observe(0.55, "max", 0.0)
    assert s.phase_done(5)
    s.advance(module, 5, 0)
    assert s.bad_epochs == 0 and s.best is None


def test_lp_ft_probe_then_everything_at_ft_lr():
    module = make_module("lp_ft", probe="sgd", lr=1e-2, mult=1.0, lp_epochs=2, ft_lr=1e-4)
    s = module.strategy
    assert not any(_frozen_state(module).values())
    assert _scheduled_lrs(module, 0)["head"] == pytest.approx(1e-2)
    assert s.phase_done(2) and not s.phase_done(1)
    s.advance(module, 2, 5)
    assert all(_frozen_state(module).values())
    lrs = _scheduled_lrs(module, 6)
    assert lrs["head"] == pytest.approx(1e-4) and lrs["backbone.layer4"] == pytest.approx(1e-4)


def test_lp_ft_head_keeps_its_own_lr_in_the_fine_tuning_phase_with_ft_head_lr():
    module = make_module("lp_ft", probe="sgd", lr=1e-2, mult=1.0, lp_epochs=2, ft_lr=1e-4, ft_head_lr=1e-3)
    module.strategy.advance(module, 2, 5)
    lrs = _scheduled_lrs(module, 6)
    assert lrs["head"] == pytest.approx(1e-3) and lrs["backbone.layer4"] == pytest.approx(1e-4)


def test_staged_state_survives_a_round_trip():
    module = make_module("progressive")
    module.strategy.advance(module, 1, 7)
    module.strategy.advance(module, 2, 14)
    state = module.strategy.state_dict()
    fresh = make_module("progressive")
    fresh.strategy.load_state_dict(state)
    fresh.strategy.restore(fresh)
    assert _frozen_state(fresh) == _frozen_state(module)
    assert fresh.strategy.unfrozen_at == {"layer4": 7, "layer3": 14}


def test_l2sp_penalty_is_the_formula():
    module = make_module("l2sp", alpha=0.2, beta=0.05)
    head_term = 0.5 * 0.05 * (module.head[1].weight ** 2).sum()
    assert module.strategy.penalty(module).item() == pytest.approx(head_term.item(), rel=1e-5)  # at the anchor
    with torch.no_grad():
        p = module.backbone.model.layer4[1].conv2.weight
        p.add_(0.01)
    expected = head_term + 0.5 * 0.2 * (0.01 ** 2) * p.numel()
    assert module.strategy.penalty(module).item() == pytest.approx(expected.item(), rel=1e-4)
    groups = build_optimizer(module.strategy.param_groups(module), module.optimizer_cfg).param_groups
    assert all(g["weight_decay"] == 0.0 for g in groups)


def test_ewc_uniform_fisher_is_the_l2sp_anchor_term_and_state_round_trips(tmp_path):
    ewc = make_module("ewc", lam=0.2, fisher_source="uniform")
    l2sp = make_module("l2sp", alpha=0.2, beta=0.0)
    l2sp.load_state_dict(ewc.state_dict())
    l2sp.strategy.anchors = [a.clone() for a in ewc.strategy.anchors]
    ewc.strategy.estimate(ewc)
    assert ewc.strategy.weights is None and ewc.strategy.fisher_from == "uniform"
    with torch.no_grad():
        for m in (ewc, l2sp):
            m.backbone.model.layer1[0].conv1.weight.mul_(1.5)
    assert ewc.strategy.penalty(ewc).item() == pytest.approx(l2sp.strategy.penalty(l2sp).item(), rel=1e-5)


def test_ewc_fisher_weights_the_penalty_and_is_checkpointed():
    module = make_module("ewc", lam=1.0)
    s = module.strategy
    s.weights = [torch.zeros_like(a) for a in s.anchors]
    s.weights[-1] = torch.full_like(s.anchors[-1], 2.0)
    s.fisher_from = "target"
    with torch.no_grad():
        for p in module.backbone.parameters():
            p.add_(0.1)
    last = list(module.backbone.parameters())[-1]
    assert s.penalty(module).item() == pytest.approx(0.5 * 2.0 * 0.01 * last.numel(), rel=1e-4)
    fresh = make_module("ewc", lam=1.0)
    fresh.strategy.load_state_dict(s.state_dict())
    assert fresh.strategy.fisher_from == "target"
    assert all(torch.equal(a, b) for a, b in zip(fresh.strategy.weights, s.weights))
    assert all(torch.equal(a, b) for a, b in zip(fresh.strategy.anchors, s.anchors))


def test_empirical_fisher_per_sample_matches_manual_gradients():
    from torch import nn

    from tl_lightning.strategies.ewc import empirical_fisher

    torch.manual_seed(0)
    backbone, head = nn.Linear(4, 3), nn.Linear(3, 2)
    xs, ys = torch.randn(5, 4), torch.tensor([0, 1, 1, 0, 1])
    loader = [{"inputs": xs[i:i + 1], "target": ys[i:i + 1]} for i in range(5)]
    fisher = empirical_fisher(backbone, head, loader, torch.nn.CrossEntropyLoss(), "cpu")
    manual = torch.zeros_like(backbone.weight)
    for i in range(5):
        backbone.zero_grad()
        torch.nn.functional.cross_entropy(head(backbone(xs[i:i + 1])), ys[i:i + 1]).backward()
        manual += backbone.weight.grad ** 2
    assert torch.allclose(fisher[0], manual / 5, atol=1e-7)
    assert backbone.training and head.training, "the modules get their mode back"
    smoothed = empirical_fisher(backbone, head, loader, torch.nn.CrossEntropyLoss(label_smoothing=0.3), "cpu")
    assert not torch.allclose(smoothed[0], fisher[0]), "the Fisher follows the configured criterion"


def test_progressive_train_bn_trains_norm_affine_of_frozen_groups_but_not_their_stats():
    module = make_module("progressive", lr=1e-2, mult=1.0, train_bn=True)
    bn = module.backbone.model.layer2[0].bn1
    conv = module.backbone.model.layer2[0].conv1
    assert bn.weight.requires_grad and not conv.weight.requires_grad
    before_w, before_mean, before_conv = bn.weight.clone(), bn.running_mean.clone(), conv.weight.clone()
    lrs = _scheduled_lrs(module, 0)
    assert lrs["backbone.layer2"] > 0  # the group's lr applies to its BatchNorm parameters
    from tl_lightning.optim import build_scheduler

    optimizer = build_optimizer(module.strategy.param_groups(module), module.optimizer_cfg)
    sched_cfg = OmegaConf.merge(OmegaConf.structured(SchedulerConf), {"name": "none"})
    build_scheduler(optimizer, sched_cfg, 100, 10, group_factor=module.strategy.lr_factor)
    module.train()
    assert not bn.training
    loss = torch.nn.functional.cross_entropy(module(torch.randn(4, 3, 32, 32)), torch.randint(0, 3, (4,)))
    loss.backward()
    optimizer.step()
    assert not torch.equal(bn.weight, before_w) and torch.equal(bn.running_mean, before_mean)
    assert torch.equal(conv.weight, before_conv)


def _norms(module):
    from tl_lightning.strategies.base import norm_layers

    return norm_layers(module.backbone)


def _norm_state(module):
    """Running statistics and affine parameters of every BatchNorm layer of the backbone."""
    norms = set(map(id, _norms(module)))
    return {f"{name}.{k}": v.clone() for name, m in module.backbone.named_modules() if id(m) in norms
            for k, v in m.state_dict().items()}


@pytest.mark.parametrize("strategy,bn", [  # every mode on finetune; l2sp and ewc share AnchoredStrategy.setup
    ("finetune", "train"), ("finetune", "freeze_stats"), ("finetune", "freeze"), ("l2sp", "freeze"),
    ("ewc", "freeze_stats")])
def test_bn_policy_for_strategies_that_train_the_backbone(strategy, bn):
    module = make_module(strategy, lr=1e-2, mult=1.0, bn=bn, **({"fisher_source": "uniform"} if strategy == "ewc" else {}))
    before = _norm_state(module)
    conv = module.backbone.model.layer1[0].conv1.weight.clone()
    train_steps(module)
    after = _norm_state(module)
    stats = [k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    affine = [k for k in before if k.endswith(("weight", "bias"))]
    assert stats and affine and not torch.equal(module.backbone.model.layer1[0].conv1.weight, conv)
    assert all(m.training == (bn == "train") for m in _norms(module)), "eval mode unless bn=train"
    assert all(torch.equal(before[k], after[k]) for k in stats) == (bn != "train"), "statistics move only with train"
    assert all(torch.equal(before[k], after[k]) for k in affine) == (bn == "freeze"), "affine frozen only with freeze"
    in_optimizer = {id(p) for g in module.strategy.param_groups(module) for p in g["params"]}
    assert all((id(p) in in_optimizer) == (bn != "freeze") for m in _norms(module) for p in m.parameters())


def test_bn_freeze_holds_for_groups_progressive_unfreezes_later_and_after_a_restore():
    module = make_module("progressive", lr=1e-2, mult=1.0, bn="freeze")
    module.strategy.advance(module, epoch=1, step=0)
    layer4 = module.backbone.model.layer4
    assert layer4[0].conv1.weight.requires_grad and not layer4[0].bn1.weight.requires_grad
    module.train()
    assert not layer4[0].bn1.training
    fresh = make_module("progressive", lr=1e-2, mult=1.0, bn="freeze")
    fresh.strategy.load_state_dict(module.strategy.state_dict())
    fresh.strategy.restore(fresh)
    assert _frozen_state(fresh) == _frozen_state(module)
    before = _norm_state(module)
    train_steps(module)
    assert all(torch.equal(v, _norm_state(module)[k]) for k, v in before.items())


def _lrs_over(module, steps, advance_at=None, total=100, max_epochs=10):
    """Each step's lrs of the head and of layer4 with scheduler cosine; the strategy advances at ``advance_at``."""
    from tl_lightning.optim import build_scheduler

    optimizer = build_optimizer(module.strategy.param_groups(module), module.optimizer_cfg)
    sched_cfg = OmegaConf.merge(OmegaConf.structured(SchedulerConf), {"name": "cosine", "min_lr_ratio": 0.0})
    own = module.strategy.configure_schedule(sched_cfg, total, max_epochs)
    sched = build_scheduler(optimizer, sched_cfg, total, max_epochs, group_factor=module.strategy.lr_factor,
                            own_schedule=own)["scheduler"]
    out = []
    for step in range(steps):
        if step == advance_at:
            module.strategy.advance(module, epoch=step // (total // max_epochs), step=step)
            for group, base, fn in zip(optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
                group["lr"] = base * fn(sched.last_epoch)
        lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
        out.append((lrs["head"], lrs["backbone.layer4"]))
        optimizer.step()
        sched.step()
    return out


def test_lp_ft_restart_schedule_gives_each_phase_its_own_cosine():
    # 100 steps, 10 epochs: 2 probe epochs (20 steps) at lr 1e-2, then everything at ft_lr 1e-3 for 80 steps
    restart = _lrs_over(make_module("lp_ft", probe="sgd", lr=1e-2, lp_epochs=2, ft_lr=1e-3, phase_schedule="restart"), 100, 20)
    cosine = lambda t, n: 0.5 * (1 + math.cos(math.pi * t / n))  # noqa: E731
    assert restart[0][0] == pytest.approx(1e-2) and restart[10][0] == pytest.approx(1e-2 * cosine(10, 20))
    assert restart[19][1] == 0.0  # the backbone is frozen while probing
    assert restart[20][0] == pytest.approx(1e-3) and restart[20][1] == pytest.approx(1e-3)  # a fresh start
    assert restart[60][1] == pytest.approx(1e-3 * cosine(40, 80))
    flat = _lrs_over(make_module("lp_ft", probe="sgd", lr=1e-2, lp_epochs=2, ft_lr=1e-3), 100, 20)  # phase_schedule=global
    assert flat[20][1] == pytest.approx(1e-3 * cosine(20, 100))  # the run's one cosine: already decayed
    assert flat[60][1] == pytest.approx(1e-3 * cosine(60, 100))


def test_restart_schedule_resumes_from_the_phase_start_it_saved():
    module = make_module("progressive", lr=1e-2, mult=1.0, phase_schedule="restart")
    module.strategy.configure_schedule(OmegaConf.merge(OmegaConf.structured(SchedulerConf), {"name": "cosine"}), 100, 10)
    module.strategy.advance(module, epoch=1, step=10)
    fresh = make_module("progressive", lr=1e-2, mult=1.0, phase_schedule="restart")
    fresh.strategy.configure_schedule(OmegaConf.merge(OmegaConf.structured(SchedulerConf), {"name": "cosine"}), 100, 10)
    fresh.strategy.load_state_dict(module.strategy.state_dict())
    fresh.strategy.restore(fresh)
    group = {"name": "backbone.layer4", "unit": "layer4"}
    assert fresh.strategy.phase_start_step == 10 and fresh.strategy.phase_steps() == 10  # unfreeze_every=1 epoch
    assert fresh.strategy.lr_factor(group, 15) == pytest.approx(module.strategy.lr_factor(group, 15))
    assert 0 < fresh.strategy.lr_factor(group, 15) < 1
