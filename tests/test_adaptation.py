"""Unlabelled data (data.unlabeled), domain adaptation and self-training terms: the formulas against hand-computed
values, the joined loader, the bad-input lines, and short runs of every term on tiny data."""

import csv
import json

import numpy as np
import pytest
import torch

from tests.helpers import expect_user_error, tiny, train_inprocess, write_image_tree
from tl_lightning.data.unlabeled import CycledSampler, joined_batch
from tl_lightning.losses.adaptation import (
    coral,
    density_ratio,
    domain_loss,
    entropy_weights,
    mmd2_multi_kernel,
    reverse_gradient,
)
from tl_lightning.losses.self_training import ALIGN_MOMENTUM, PseudoLabelTerm

UNLABELED = "+data.unlabeled={name: synthetic, per_class: 12}"


def test_multi_kernel_mmd_by_hand():
    s = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    t = torch.tensor([[0.0, 2.0]])
    x = np.array([[0, 0], [1, 0], [0, 2]], dtype=float)
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    base = d2.sum() / (9 - 3)  # mean off-diagonal squared distance: (1 + 4 + 5) * 2 / 6
    k = sum(np.exp(-d2 / (base * 2.0 ** (j - 1))) for j in range(3))
    expected = k[:2, :2].mean() + k[2:, 2:].mean() - 2 * k[:2, 2:].mean()
    assert float(mmd2_multi_kernel(s, t, kernels=3, kernel_mul=2.0)) == pytest.approx(expected, rel=1e-5)
    assert float(mmd2_multi_kernel(s, s.clone())) == pytest.approx(0.0, abs=1e-6)


def test_coral_by_hand():
    s = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    t = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    cs, ct = np.diag([2 / 3, 8 / 3]), np.diag([8 / 3, 2 / 3])  # sum of squares / (n - 1)
    assert float(coral(s, t)) == pytest.approx(((cs - ct) ** 2).sum() / (4 * 2 * 2), rel=1e-6)
    assert float(coral(s, s + 5.0)) == pytest.approx(0.0, abs=1e-6), "a shift of the mean is no covariance change"


def test_gradient_reversal_and_the_domain_loss():
    x = torch.ones(3, requires_grad=True)
    (reverse_gradient(x, 0.5) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.tolist() == [-0.5, -1.0, -1.5]
    scores = torch.tensor([10.0, 10.0, -10.0])  # two source samples, one target, all classified right
    assert float(domain_loss(scores, 2)) < 1e-4
    assert float(domain_loss(-scores, 2)) == pytest.approx(10.0, rel=1e-3)
    logits = torch.tensor([[20.0, 0.0], [0.0, 0.0]])
    assert entropy_weights(logits).tolist() == pytest.approx([2.0, 1.5], rel=1e-4), "1 + exp(-H): H=0 and H=ln 2"


def _term(**options):
    from omegaconf import OmegaConf

    node = OmegaConf.create({"weight": 1.0, "threshold": 0.95, "warmup": 0.0, "align": False, **options})
    term = PseudoLabelTerm("pl", node)
    term.attach(8, 2)
    return term


def test_confident_labels_distribution_alignment_warmup_and_the_density_ratio():
    batch = {"target": torch.tensor([1, 1, 1, 0])}  # the labelled batch: class 1 three times in four
    labels, mask = _term().confident_labels(batch, torch.tensor([[5.0, 0.0], [0.1, 0.0]]))
    assert labels.tolist() == [0, 0] and mask.tolist() == [1.0, 0.0]
    # alignment: p * labelled mean / unlabelled mean, renormalised; both means move from uniform by 1 - momentum
    term = _term(align=True, threshold=0.5)
    logits = torch.tensor([[2.0, 0.0], [1.0, 0.0]])
    p = torch.softmax(logits, -1)
    step = 1 - ALIGN_MOMENTUM
    labelled = 0.5 + step * (torch.tensor([0.25, 0.75]) - 0.5)
    unlabelled = 0.5 + step * (p.mean(0) - 0.5)
    aligned = p * labelled / unlabelled
    aligned = aligned / aligned.sum(-1, keepdim=True)
    labels, mask = term.confident_labels(batch, logits)
    assert torch.allclose(term.labelled_mean, labelled) and torch.allclose(term.unlabelled_mean, unlabelled)
    assert labels.tolist() == aligned.argmax(-1).tolist() and mask.tolist() == (aligned.max(-1).values >= 0.5).float().tolist()
    for _ in range(500):  # class 0 predicted everywhere, class 1 labelled three times in four: class 1 wins
        labels, _ = term.confident_labels(batch, torch.tensor([[1.0, 0.0]] * 4))
    assert labels.tolist() == [1, 1, 1, 1]
    term.eval()  # evaluation never moves the means
    before = term.unlabelled_mean.clone()
    term.confident_labels(batch, logits)
    assert torch.equal(before, term.unlabelled_mean) and set(term.state_dict()) == {"labelled_mean", "unlabelled_mean"}
    assert _term(warmup=0.5).scale(None) == 1.0 and _term().scale(None) == 1.0  # outside a fit: full weight

    class Progress:  # 10 % through training, with a warm-up over its first quarter
        _trainer = type("T", (), {"estimated_stepping_batches": 100, "global_step": 10})()

    assert _term(warmup=0.25).scale(Progress()) == pytest.approx(0.4)
    rng = np.random.default_rng(0)
    source = np.concatenate([rng.normal(0, 1, (100, 2)), rng.normal(4, 1, (100, 2))])
    target = rng.normal(4, 1, (200, 2))
    w = density_ratio(source, target, 1000, 10.0)
    assert w.mean() == pytest.approx(1.0) and w.max() <= 10.0
    assert w[100:].mean() > 5 * w[:100].mean(), "source samples where the target lies weigh more"
    # nearly separable domains: a few source samples near the target; the bound holds after the scaling to mean 1
    source = np.concatenate([rng.normal(0, 1, (195, 2)), rng.normal(6, 1, (5, 2))])
    target = rng.normal(6, 1, (200, 2))
    w = density_ratio(source, target, 1000, 10.0)
    assert w.mean() == pytest.approx(1.0) and w.max() == pytest.approx(10.0) and (w[195:] == w.max()).all()


def test_the_unlabelled_stream_covers_every_sample_before_repeating_and_splits_over_ranks():
    n, per_rank, world = 10, 4, 2
    samplers = [CycledSampler(n, per_rank, seed=3, num_replicas=world, rank=r) for r in range(world)]
    seen = []
    for epoch in range(5):
        shares = []
        for s in samplers:
            s.set_epoch(epoch)
            shares.append(list(s))
        assert all(len(share) == per_rank for share in shares)
        seen += [i for pair in zip(*shares) for i in pair]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    again = CycledSampler(n, per_rank, seed=3, num_replicas=world, rank=0)
    again.set_epoch(3)
    samplers[0].set_epoch(3)
    assert list(again) == list(samplers[0]), "an epoch's draws depend on (seed, epoch) alone: resume is exact"
    assert joined_batch({"labeled": {"target": 1}, "unlabeled": {"inputs": 2}}) == {"target": 1, "unlabeled": {"inputs": 2}}


@pytest.mark.parametrize("args, fragments", [
    (["adapt=dann"], ["loss.terms.dann", "needs unlabelled data", "data.unlabeled="]),
    ([UNLABELED, "adapt=dann", "loss.terms.dann.weight=-1"], ["loss.terms.dann.weight", ">= 0"]),
    ([UNLABELED, "adapt=pseudo_label", "loss.terms.pseudo_label.threshold=1.5"], ["threshold", "(0, 1)"]),
    ([UNLABELED, "adapt=fixmatch", "loss.terms.fixmatch.threshold=0"], ["threshold", "(0, 1)"]),
    ([UNLABELED, "adapt=pseudo_label", "loss.terms.pseudo_label.warmup=1.5"], ["warmup", "[0, 1]"]),
    ([UNLABELED, "adapt=mmd", "data.unlabeled_ratio=0"], ["unlabeled_ratio=0", ">= 1"]),
    ([UNLABELED, "data.unlabeled_ratio=-1"], ["data.unlabeled_ratio", ">= 0"]),
    (["optimized_metric=target_val/acc"], ["oracle", "data.unlabeled="]),
    (["+data.unlabeled={name: synthetic_text}"], ["data.unlabeled", "text samples", "same modality"]),
    (["+data.unlabeled={name: synthetic, seed: 3}"], ["data.unlabeled.seed", "split seed"]),
    (["+data.unlabeled={name: no_such_data}"], ["data.unlabeled.name", "no_such_data"]),
    (["+data.unlabeled=7"], ["data.unlabeled", "expected a data option"]),
    ([UNLABELED, "strategy=protonet"], ["strategy=protonet", "data.unlabeled"]),
    ([UNLABELED, "adapt=importance", "loss=focal"], ["importance", "loss=ce"]),
])
def test_bad_adaptation_options_are_one_line_before_training(tmp_path, args, fragments):
    expect_user_error(tiny() + args, tmp_path, *fragments)


def test_fixmatch_is_refused_for_text(tmp_path):
    args = ["backbone=minilm", "data=synthetic_text", "logger=csv", "+data.unlabeled={name: synthetic_text}",
            "adapt=fixmatch"]
    expect_user_error(args, tmp_path, "data.unlabeled_strong", "text", "pseudo_label")


def test_an_empty_unlabelled_folder_and_a_leaking_split_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    expect_user_error(tiny() + [f"+data.unlabeled={{name: image_folder, root: {tmp_path / 'empty'}}}"], tmp_path / "a",
                      "data.unlabeled", "no images")
    expect_user_error(tiny() + ["+data.unlabeled={name: synthetic, per_class: 12, test_fraction: 0.1}"], tmp_path / "b",
                      "data.unlabeled", "labelled val/test samples")


def _metrics(run_dir):
    return [r for r in csv.DictReader((run_dir / "csv" / "metrics.csv").open())]


def test_dann_trains_on_both_sources_and_reports_the_target_and_the_gap(tmp_path):
    from tl_lightning.deploy.evaluate import evaluate  # noqa: F401  (the adapted checkpoint is an ordinary one)
    from tl_lightning.inference import load

    metrics, summary = train_inprocess(tiny() + [UNLABELED, "adapt=dann"], tmp_path)
    adaptation = summary["adaptation"]
    assert adaptation["selection"] == {"monitor": "val/acc", "oracle": False, "uses_target_labels": False}
    assert 0 <= adaptation["target_test"]["acc"] <= 1 and adaptation["target_test"]["samples"] == 10
    assert set(adaptation["feature_gap"]) == {"before", "after"}
    assert adaptation["feature_gap"]["before"]["samples"] == [10, 10]
    assert summary["split"]["unlabeled"]["sizes"]["train"] == 30
    assert "target_test/acc" in metrics
    rows = [r for r in _metrics(tmp_path) if r.get("train/dann")]
    assert rows and all(float(r["train/dann"]) > 0 for r in rows)
    state = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    assert any(k.startswith("term_modules.0.classifier.") for k in state), "the domain classifier is checkpointed"
    model = load(str(tmp_path / "checkpoints" / "best.ckpt"))  # eval/predict/export start here
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 4)


def test_the_other_terms_train_together_and_an_oracle_is_marked(tmp_path):
    args = tiny() + [UNLABELED, "adapt=cdan_e", "+loss.terms.coral={kind: coral, weight: 0.5}",
                     "+loss.terms.mmd={kind: mmd, weight: 0.5}",
                     "+loss.terms.pl={kind: pseudo_label, threshold: 0.3, align: true, warmup: 0.5}",
                     "optimized_metric=target_val/acc",
                     "callbacks.model_checkpoint.monitor=target_val/acc"]
    _, summary = train_inprocess(args, tmp_path)
    assert summary["adaptation"]["selection"]["oracle"] is True and summary["optimized_metric"] == "target_val/acc"
    rows = _metrics(tmp_path)
    for name in ("cdan", "coral", "mmd", "pl", "pl_mask", "cdan_domain_acc"):
        assert any(r.get(f"train/{name}") for r in rows), name
    assert any(r.get("target_val/acc") for r in rows)


def test_fixmatch_and_importance_weighting(tmp_path):
    _, summary = train_inprocess(tiny() + [UNLABELED, "adapt=fixmatch", "loss.terms.fixmatch.threshold=0.3",
                                           "data.unlabeled_ratio=2"], tmp_path / "fixmatch")
    assert summary["split"]["unlabeled"]["strong_view"] is True
    assert any(r.get("train/fixmatch_mask") for r in _metrics(tmp_path / "fixmatch"))
    # a flat folder of images is one unlabelled pool; importance weighting reads its training split only
    folder = tmp_path / "site_b"
    write_image_tree(folder, classes=("x",), per_class=20, size=16)
    for image in (folder / "x").iterdir():
        image.rename(folder / image.name)
    (folder / "x").rmdir()
    labelled = write_image_tree(tmp_path / "site_a", classes=("cat", "dog"), per_class=30, size=16)
    args = tiny("image_folder") + [f"data.root={labelled}", f"+data.unlabeled={{name: image_folder, root: {folder}}}",
                                   "adapt=importance"]
    _, summary = train_inprocess(args, tmp_path / "importance")
    info = summary["split"]["unlabeled"]
    assert info["has_labels"] is False and "target_test" not in summary["adaptation"]
    assert summary["adaptation"]["feature_gap"]["before"]["samples"][1] > 0
    state = torch.load(tmp_path / "importance" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    weights = state["term_modules.0.weights"]
    assert weights.numel() > 0 and (weights > 0).all()
    json.dumps(summary)  # summary.json holds plain values


def test_fashion_mnist_m_blends_each_garment_with_a_fixed_photo_patch(tmp_path):
    from omegaconf import OmegaConf

    from tests.helpers import write_fashion_root
    from tl_lightning.backbones.preprocessing import ImagePreprocessing, InputSpec
    from tl_lightning.config import load_option
    from tl_lightning.config.validate import validate_data
    from tl_lightning.data import build_datamodule

    root = write_fashion_root(tmp_path / "fm")
    prep = ImagePreprocessing(InputSpec(size=32, mean=(0.5,) * 3, std=(0.5,) * 3))

    def source(blend_seed):
        cfg = validate_data(OmegaConf.merge(load_option("data", "fashion_mnist_m"),
                                            {"root": root, "blend_seed": blend_seed, "samples_per_class": None}))
        dm = build_datamodule(cfg, prep)
        return dm.load()

    a, b, other = source(0), source(0), source(1)
    first = a.train.sample(0)
    assert first.shape == (28, 28, 3) and first.dtype == np.uint8
    assert np.array_equal(first, b.train.sample(0)) and not np.array_equal(first, other.train.sample(0))
    garment = a.train.images[0].astype(int)
    assert not np.array_equal(first[..., 0].astype(int), garment), "blended, not the plain garment"
    assert list(a.train.targets) == list(other.train.targets) and a.class_names[0] == "T-shirt/top"


def test_every_adapt_preset_names_all_options_of_its_term():
    """loss.terms.<name>.<option>=... works from the command line only for keys the preset has (loss.terms is a
    free mapping, so Hydra knows no schema for it): each preset restates its term's options, unlike the groups of
    test_config's one-source-of-truth test, and this test keeps the two in step."""
    import dataclasses
    from pathlib import Path

    from omegaconf import OmegaConf

    from tl_lightning.config.terms import TERM_SCHEMAS

    presets = sorted((Path(__file__).parents[1] / "conf" / "adapt").glob("*.yaml"))
    assert len(presets) == 9
    for path in presets:
        for name, node in OmegaConf.load(path).get("loss", {}).get("terms", {}).items():
            options = {f.name for f in dataclasses.fields(TERM_SCHEMAS[node.kind])}
            assert set(node) == options, (path.name, name)
