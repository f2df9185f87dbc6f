"""Long-tailed budgets, the class-balanced sampler and the long-tail criteria (issue: imbalance and fairness)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from tests.helpers import tiny, train_inprocess
from tl_lightning.config.schema import LossConf
from tl_lightning.data.samplers import BalancedSampler
from tl_lightning.data.splits import long_tail_budget
from tl_lightning.errors import ConfigError
from tl_lightning.losses import build_criterion


def test_exponential_budget_from_head_to_tail():
    budget = long_tail_budget(100, 10, 50.0, "fixed", seed=0)
    assert budget[0] == 100 and budget[-1] == 2 and budget == sorted(budget, reverse=True)
    assert budget[5] == round(100 * 50 ** (-5 / 9))
    by_seed = long_tail_budget(100, 10, 50.0, "seed", seed=3)
    assert sorted(by_seed) == sorted(budget) and by_seed != budget
    assert by_seed == long_tail_budget(100, 10, 50.0, "seed", seed=3)
    assert long_tail_budget(7, 4, 1.0, "fixed", seed=0) == [7, 7, 7, 7]


def test_imbalanced_datamodule_draws_the_budget_and_keeps_eval_splits(compose):
    from tl_lightning.backbones.preprocessing import ImagePreprocessing, InputSpec
    from tl_lightning.config.validate import validate_config
    from tl_lightning.data import build_datamodule

    prep = ImagePreprocessing(InputSpec(size=32, mean=(0.5,) * 3, std=(0.5,) * 3))

    def setup(*overrides):
        cfg = validate_config(compose(["data=synthetic", "data.per_class=40", *overrides]))
        dm = build_datamodule(cfg.data, prep)
        dm.setup("fit")
        return dm

    balanced = setup("data.samples_per_class=20")
    skewed = setup("data.samples_per_class=20", "data.imbalance.ratio=10")
    assert skewed.split_info["class_counts"]["train"] == [20, 9, 4, 2] == skewed.split_info["train_budget"]
    for split in ("val", "test"):  # val and test are the balanced run's, sample for sample
        assert np.array_equal(skewed.datasets[split].indices, balanced.datasets[split].indices)
    listed = setup("data.imbalance.counts=[3,1,5,2]")
    assert listed.split_info["class_counts"]["train"] == [3, 1, 5, 2]
    with pytest.raises(ConfigError, match="has 3 entries but data=synthetic has 4 classes"):
        setup("data.imbalance.counts=[3,1,5]")


@pytest.mark.parametrize("overrides,message", [
    (["data.imbalance.ratio=0.5"], "'data.imbalance.ratio': the head class's budget over the tail's, >= 1"),
    (["data.samples_per_class=null", "data.imbalance.ratio=10"], "needs data.samples_per_class"),
    (["data.imbalance.ratio=10", "data.imbalance.counts=[1,2]"], "give ratio (an exponential profile) or counts"),
    (["data.imbalance.counts=[0,2]"], "one budget >= 1 per class"),
    (["data.imbalance.order=random"], "'data.imbalance.order': 'random' is not valid; valid: fixed, seed"),
    (["data.sampler=weighted"], "'data.sampler': 'weighted' is not valid; valid: random, balanced"),
    (["loss=class_balanced", "loss.beta=1.0"], "'loss.beta': must be in (0, 1)"),
    (["loss=focal", "loss.weighting=sqrt"], "'loss.weighting': 'sqrt' is not valid"),
    (["loss=focal", "loss.gamma=-1"], "'loss.gamma': must be >= 0"),
])
def test_long_tail_mistakes_are_one_line(compose, overrides, message):
    from tl_lightning.config.validate import validate_config

    with pytest.raises(ConfigError) as info:
        validate_config(compose(overrides))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_balanced_sampler_draws_classes_equally_and_splits_one_stream_across_ranks():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)  # 90 : 9 : 1
    alone = BalancedSampler(labels, seed=4)
    draws = []
    for epoch in range(30):
        alone.set_epoch(epoch)
        draws += list(alone)
    assert len(alone) == len(labels) and len(draws) == 30 * len(labels)
    freq = np.bincount(labels[draws], minlength=3) / len(draws)
    assert np.allclose(freq, 1 / 3, atol=0.03), freq  # each class a third, whatever its size
    alone.set_epoch(7)
    first, again = list(alone), list(alone)
    assert first == again  # deterministic per (seed, epoch): a resumed epoch draws the same
    alone.set_epoch(8)
    assert list(alone) != first
    ranks = [BalancedSampler(labels, seed=4, num_replicas=3, rank=r) for r in range(3)]
    for r in ranks:
        r.set_epoch(7)
    shares = [list(r) for r in ranks]
    assert all(len(s) == math.ceil(len(labels) / 3) for s in shares)
    stream = ranks[0].stream().tolist()
    assert [stream[k] for k in range(0, len(stream), 3)] == shares[0]
    positions = [set(range(r, len(stream), 3)) for r in range(3)]  # disjoint positions, covering the stream
    assert set.union(*positions) == set(range(len(stream))) and sum(map(len, positions)) == len(stream)
    assert sorted(sum(shares, [])) == sorted(stream)
    assert isinstance(ranks[0], torch.utils.data.distributed.DistributedSampler)  # Lightning leaves it unwrapped


def loss_cfg(name, **kw):
    cfg = OmegaConf.structured(LossConf)
    cfg.name = name
    for k, v in kw.items():
        cfg[k] = v
    return cfg


LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0], [1.0, 1.0, 1.0]])
TARGET = torch.tensor([0, 2, 1, 2])
COUNTS = [90, 9, 1]


def test_class_balanced_weights_follow_the_effective_number():
    beta = 0.99
    eff = [(1 - beta ** n) / (1 - beta) for n in COUNTS]
    w = torch.tensor([1 / e for e in eff])
    w = w * 3 / w.sum()
    expected = sum(w[t] * -F.log_softmax(LOGITS[i], -1)[t] for i, t in enumerate(TARGET)) / sum(w[t] for t in TARGET)
    got = build_criterion(loss_cfg("class_balanced", weighting="effective", beta=beta), COUNTS)(LOGITS, TARGET)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    inverse = build_criterion(loss_cfg("class_balanced", weighting="inverse"), COUNTS)
    assert torch.allclose(inverse.weight, torch.tensor([1 / 90, 1 / 9, 1.0]) * 3 / (1 / 90 + 1 / 9 + 1))


def test_focal_loss_by_hand():
    p = F.softmax(LOGITS, -1)[torch.arange(4), TARGET]
    expected = (-(1 - p) ** 2 * torch.log(p)).mean()
    assert float(build_criterion(loss_cfg("focal", gamma=2.0), COUNTS)(LOGITS, TARGET)) == pytest.approx(float(expected))
    ce = F.cross_entropy(LOGITS, TARGET)
    assert float(build_criterion(loss_cfg("focal", gamma=0.0), COUNTS)(LOGITS, TARGET)) == pytest.approx(float(ce))


def test_logit_adjustment_and_balanced_softmax_by_hand():
    prior = torch.tensor(COUNTS, dtype=torch.float) / sum(COUNTS)
    expected = F.cross_entropy(LOGITS + 0.5 * torch.log(prior), TARGET)
    got = build_criterion(loss_cfg("logit_adjusted", tau=0.5), COUNTS)(LOGITS, TARGET)
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
    balanced = build_criterion(loss_cfg("balanced_softmax"), COUNTS)(LOGITS, TARGET)
    assert float(balanced) == pytest.approx(float(F.cross_entropy(LOGITS + torch.log(torch.tensor([90.0, 9, 1])), TARGET)),
                                            rel=1e-6)


def test_balanced_sampler_in_a_run_feeds_the_tail_as_often_as_the_head(tmp_path):
    """A run on a 20:2 budget with data.sampler=balanced: the batches hold every class about equally often, and the
    summary reports the head, middle and tail classes' test accuracy."""
    seen = tmp_path / "seen.txt"
    args = tiny() + ["data.per_class=40", "data.samples_per_class=20", "data.imbalance.ratio=10",
                     "data.sampler=balanced", "loss=logit_adjusted",
                     f"+callbacks.extra.seen={{_target_: tests.ddp_probe.SeenBatches, path: {seen}}}"]
    _, summary = train_inprocess(args, tmp_path / "run")
    epochs = [list(map(int, line.split())) for line in seen.read_text().splitlines()]
    assert len(epochs) == 2 and all(len(e) == sum([20, 9, 4, 2]) for e in epochs)
    freq = np.bincount(sum(epochs, []), minlength=4) / sum(map(len, epochs))
    assert freq.min() > 0.15 and freq.max() < 0.35, freq  # a random sampler would give the tail 2/35 = 6 %
    assert epochs[0] != epochs[1]
    tail = summary["long_tail"]
    assert tail["head_classes"] == ["class0"] and tail["tail_classes"] == ["class3"]
    assert tail["test_tail_acc"] == summary["test_per_class"]["class3"]
    assert "test/acc_balanced" in summary["test"]
