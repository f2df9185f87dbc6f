"""Groups (slices): the shortcut benchmark, group metrics, Group DRO and group-balanced sampling (issue: imbalance
and fairness)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from tl_lightning.config.schema import LossConf
from tl_lightning.data.shortcut import PALETTE, draw_colours
from tl_lightning.errors import ConfigError
from tl_lightning.losses import build_criterion
from tl_lightning.metrics import StageMetrics


@pytest.fixture(scope="module")
def shortcut_data():
    from tl_lightning.backbones.preprocessing import ImagePreprocessing, InputSpec
    from tl_lightning.compose import compose_config
    from tl_lightning.data import build_datamodule

    cfg = compose_config(["data=synthetic", "data.per_class=60", "data.shortcut.kind=tint",
                          "data.shortcut.train_correlation=0.9", "logger=csv"], "/tmp/unused")
    dm = build_datamodule(cfg.data, ImagePreprocessing(InputSpec(size=32, mean=(0.5,) * 3, std=(0.5,) * 3)))
    dm.setup("fit")
    return dm


def test_shortcut_colour_follows_the_class_in_train_and_not_in_test(shortcut_data):
    dm = shortcut_data
    share = dm.split_info["shortcut"]["aligned_share"]
    assert 0.83 < share["train"] < 0.97 and 0.8 < share["val"] <= 1.0  # 0.9 by construction
    assert share["test"] < 0.45  # independent of the class: 1/4 expected with 4 classes
    assert dm.group_names[:2] == ["class0/aligned", "class0/conflicting"] and len(dm.group_names) == 8
    train = dm.datasets["train"]
    groups, labels = train.sample_groups, train.targets
    assert np.array_equal(groups // 2, labels)  # group = 2 * class + conflicting
    counts = dm.split_info["groups"]["counts"]
    assert sum(counts["train"]) == len(train) and sum(counts["test"]) == len(dm.datasets["test"])
    item = train[0]
    assert item["group"] == groups[0]


def test_tint_multiplies_the_image_by_the_samples_colour(shortcut_data):
    train = shortcut_data.datasets["train"]
    i = int(train.indices[0])
    plain = np.asarray(train.source.source.sample(i), dtype=np.float32)
    plain = plain if plain.ndim == 3 else np.repeat(plain[..., None], 3, axis=2)
    tinted = train.source.sample(i).astype(np.float32)
    colour = PALETTE[train.source.colour[i]]
    assert np.abs(tinted - np.rint(plain * colour / 255)).max() <= 1.0


def test_colours_drawn_with_the_asked_correlation():
    labels = np.arange(10_000) % 5
    aligned = np.mean(draw_colours(labels, 5, 0.7, seed=0) == labels)
    assert abs(aligned - 0.7) < 0.02
    independent = draw_colours(labels, 5, None, seed=0)
    assert abs(np.mean(independent == labels) - 0.2) < 0.02
    others = draw_colours(labels, 5, 0.0, seed=1)
    assert not np.any(others == labels) and set(np.unique(others)) == set(range(5))


def test_group_metrics_worst_and_mean():
    metrics = StageMetrics("test", 2, ["a/aligned", "a/conflicting", "b/aligned", "b/conflicting"])
    logits = torch.tensor([[2.0, 0], [2.0, 0], [0, 2.0], [0, 2.0], [2.0, 0], [0, 2.0]])
    target = torch.tensor([0, 0, 1, 1, 1, 0])
    group = torch.tensor([0, 0, 2, 2, 3, 1])  # groups 1 and 3: one sample each, both wrong
    metrics.update(logits, target, group)
    out = metrics.group_scalars()
    assert float(out["test/worst_group_acc"]) == 0.0 and float(out["test/mean_group_acc"]) == 0.5
    assert float(out["test/acc_group/a/aligned"]) == 1.0 and float(out["test/acc_group/b/conflicting"]) == 0.0
    assert "test/worst_group_acc" in metrics.names(["a", "b"])


def test_group_dro_weights_follow_the_exponentiated_gradient_by_hand():
    cfg = OmegaConf.structured(LossConf)
    cfg.name, cfg.eta = "group_dro", 0.5
    dro = build_criterion(cfg, [10, 10], group_counts=[5, 5, 5, 5])
    logits = torch.tensor([[1.0, 0.0], [0.2, 0.1], [0.0, 1.0], [1.0, -1.0]])
    target = torch.tensor([0, 1, 1, 1])
    group = torch.tensor([0, 1, 2, 3])
    per = F.cross_entropy(logits, target, reduction="none")
    q = torch.full((4,), 0.25) * torch.exp(0.5 * per)
    q = q / q.sum()
    loss = dro.train()(logits, target, group)
    assert torch.allclose(dro.q, q) and float(loss) == pytest.approx(float((q * per).sum()), rel=1e-5)
    before = dro.q.clone()
    dro.eval()(logits, target, group)
    assert torch.equal(dro.q, before)  # no update outside training
    assert float(dro(logits, target)) == pytest.approx(float(per.mean()))  # no groups: the mean cross-entropy
    assert "q" in dro.state_dict()  # kept in checkpoints: a resumed run continues with its weights


@pytest.mark.parametrize("overrides,message", [
    (["loss=group_dro"], "loss=group_dro needs groups in the data"),
    (["data.sampler=group_balanced"], "data.sampler=group_balanced needs groups"),
    (["data.shortcut.kind=stripes"], "'data.shortcut.kind': 'stripes' is not valid"),
    (["data.shortcut.kind=tint", "data.shortcut.train_correlation=1.5"], "a probability in [0, 1]"),
    (["data.shortcut.kind=tint", "loss=group_dro", "loss.eta=0"], "'loss.eta': must be a positive number"),
])
def test_group_mistakes_are_one_line(compose, overrides, message):
    from tl_lightning.config.validate import validate_config

    with pytest.raises(ConfigError) as info:
        validate_config(compose(overrides))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_group_dro_and_group_sampling_run_and_report_groups(tmp_path):
    from tests.helpers import tiny, train_inprocess

    seen = tmp_path / "seen.txt"
    # a correlation of 0.5 and a larger val split: val holds every (class, aligned|conflicting) group, which a
    # run selecting by val/worst_group_acc needs (it refuses otherwise)
    args = tiny() + ["data.per_class=30", "data.shortcut.kind=patch", "data.shortcut.train_correlation=0.5",
                     "data.val_fraction=0.3", "loss=group_dro", "data.sampler=group_balanced",
                     "strategy=ewc", "optimized_metric=val/worst_group_acc", "callbacks.fairness.enabled=true",
                     "callbacks.fairness.action=rollback", "+loss.terms.fair={kind: equalized_odds, weight: 0.5}",
                     f"+callbacks.extra.seen={{_target_: tests.ddp_probe.SeenBatches, path: {seen}}}"]
    metrics, summary = train_inprocess(args, tmp_path / "run")
    assert "test/worst_group_acc" in summary["test"] and len(summary["test_per_group"]) >= 4
    assert summary["optimized_metric"] == "val/worst_group_acc" and summary["best_score"] is not None
    assert metrics["train/ewc"] >= 0  # Group DRO combines with a strategy's penalty
    assert isinstance(summary["fairness_events"], list)  # the monitor ran (its actions: the scripted test above)
    assert metrics["train/fair"] > 0  # the equalized-odds term, logged under its name next to EWC's penalty
    assert 0.0 <= summary["test"]["test/dp_gap"] <= 1.0 and 0.0 <= summary["test"]["test/eo_gap"] <= 1.0
    assert "val/eo_gap" in summary["val"]
    ckpt = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=True)
    assert "criterion.q" in ckpt["state_dict"]
    from tests.test_deploy import tool_config
    from tl_lightning.deploy.evaluate import evaluate

    again = evaluate(tool_config("eval", [f"ckpt_path={summary['best_checkpoint']}", "logger=csv", "progress_bar=false"],
                                 tmp_path / "eval"), str(tmp_path / "eval"))
    assert again["test"]["test/worst_group_acc"] == pytest.approx(summary["test"]["test/worst_group_acc"], abs=1e-6)
    assert again["test_per_group"] == pytest.approx(summary["test_per_group"], abs=1e-6)  # the same colours drawn


def scripted(monitor, values, module=None):
    """Feed ``values`` to the monitor as one validation per epoch; returns the epochs where fit was told to stop."""
    from types import SimpleNamespace

    stops = []
    for epoch, value in enumerate(values):
        if module is not None:
            with torch.no_grad():
                module.weight.fill_(float(epoch))  # the weights tell which epoch they are from
        trainer = SimpleNamespace(sanity_checking=False, current_epoch=epoch, should_stop=False, loggers=[],
                                  global_step=epoch, callback_metrics={"val/worst_group_acc": torch.tensor(value)})
        monitor.on_validation_end(trainer, module)
        if trainer.should_stop:
            stops.append(epoch)
    return stops


def test_fairness_monitor_warns_stops_and_rolls_back_on_a_scripted_sequence():
    from tl_lightning.callbacks.fairness import FairnessMonitor

    values = [0.30, 0.50, 0.47, 0.40, 0.38, 0.52, 0.40, 0.39]  # best 0.50 at epoch 1; 0.40, 0.38: > 0.05 below
    warn = FairnessMonitor("val/worst_group_acc", margin=0.05, patience=2, action="warn")
    assert scripted(warn, values) == [] and [e["epoch"] for e in warn.events] == [4, 7]
    assert warn.events[0]["best"] == 0.50 and warn.events[1]["best_epoch"] == 5
    stop = FairnessMonitor("val/worst_group_acc", margin=0.05, patience=2, action="stop")
    assert scripted(stop, values) == [4, 7]
    module = torch.nn.Linear(1, 1, bias=False)
    rollback = FairnessMonitor("val/worst_group_acc", margin=0.05, patience=2, action="rollback")
    assert scripted(rollback, values[:5], module) == []
    assert rollback.events[0]["epoch"] == 4 and float(module.weight) == 1.0  # epoch 1's weights are back
    gap = FairnessMonitor("val/worst_group_acc", mode="min", max_gap=0.1, patience=1, action="stop",
                          margin=1.0)
    assert scripted(gap, [0.05, 0.08, 0.12]) == [2]  # above max_gap once: patience 1


def test_fairness_monitor_config_mistakes(compose):
    from tl_lightning.config.validate import check_metric_names, validate_config

    with pytest.raises(ConfigError, match="'callbacks.fairness.action': 'pause' is not valid"):
        validate_config(compose(["callbacks.fairness.action=pause"]))
    with pytest.raises(ConfigError, match="needs callbacks.fairness.mode=min"):
        validate_config(compose(["callbacks.fairness.max_gap=0.1"]))
    cfg = validate_config(compose(["callbacks.fairness.enabled=true"]))
    with pytest.raises(ConfigError, match="'callbacks.fairness.monitor': 'val/worst_group_acc' is not a metric"):
        check_metric_names(cfg, {"val/acc", "val/loss"})  # data without groups logs no worst-group accuracy


def test_fairness_gaps_are_fairlearns_and_the_soft_terms_match_them_on_hard_predictions():
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    from tl_lightning.losses.fairness import gaps, soft_dp_gap, soft_eo_gap

    rng = np.random.default_rng(0)
    y_true, y_pred, attribute = rng.integers(0, 2, 200), rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    y_pred[attribute == 1] = 1  # attribute 1 is predicted positive far more often
    out = gaps(y_true, y_pred, attribute, 2)
    assert out["dp_gap"] == pytest.approx(demographic_parity_difference(y_true, y_pred, sensitive_features=attribute))
    assert out["eo_gap"] == pytest.approx(equalized_odds_difference(y_true, y_pred, sensitive_features=attribute))
    one_hot = F.one_hot(torch.as_tensor(y_pred), 2).float()  # the soft gaps on hard predictions
    a, t = torch.as_tensor(attribute), torch.as_tensor(y_true)
    assert float(soft_dp_gap(one_hot, a)) == pytest.approx(out["dp_gap"], abs=1e-6)
    assert float(soft_eo_gap(one_hot, t, a)) == pytest.approx(out["eo_gap"], abs=1e-6)
    # three classes: one against the rest, the largest gap (here class 2's selection rate: 0.5 vs 0.0)
    y3 = np.array([0, 1, 2, 2, 0, 1, 2, 0])
    p3 = np.array([2, 2, 2, 2, 0, 1, 0, 0])
    a3 = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert gaps(y3, p3, a3, 3)["dp_gap"] == pytest.approx(1.0)
    probs = torch.softmax(torch.randn(8, 3, requires_grad=True), -1)
    soft_eo_gap(probs, torch.as_tensor(y3), torch.as_tensor(a3)).backward()  # differentiable



def write_groups_csv(path, rows, header=("path", "site")):
    import csv

    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def site_of(name: str) -> str:
    return "urban" if int(name.split(".")[0]) % 3 else "rural"  # 0.png, 3.png, ... are rural


def image_folder_groups(tmp_path, rows=None, layout="flat", **extra):
    """A two-class image folder (10 per class, or train/val/test folders) with a site per image."""
    from tests.helpers import write_image_tree

    if layout == "flat":
        root = write_image_tree(tmp_path / "imgs", per_class=10)
        files = [f"{c}/{i}.png" for c in ("cat", "dog") for i in range(10)]
    else:
        root = str(tmp_path / "imgs")
        for seed, split in enumerate(("train", "val", "test")):
            write_image_tree(tmp_path / "imgs" / split, per_class=6, seed=seed)
        files = [f"{s}/{c}/{i}.png" for s in ("train", "val", "test") for c in ("cat", "dog") for i in range(6)]
    rows = [(f, site_of(f.rsplit("/", 1)[1])) for f in files] if rows is None else rows(files)
    meta = write_groups_csv(tmp_path / "meta.csv", rows)
    return ["data=image_folder", f"data.root={root}", f"data.groups_csv={meta}", "data.group_column=site",
            *(f"{k}={v}" for k, v in extra.items())]


def setup_data(compose, overrides):
    from tl_lightning.backbones.preprocessing import ImagePreprocessing, InputSpec
    from tl_lightning.config.validate import validate_config
    from tl_lightning.data import build_datamodule

    cfg = validate_config(compose([*overrides, "logger=csv"]))
    dm = build_datamodule(cfg.data, ImagePreprocessing(InputSpec(size=16, mean=(0.5,) * 3, std=(0.5,) * 3)))
    dm.setup("fit")
    return cfg, dm


def test_image_folder_groups_come_from_the_metadata_file(tmp_path, compose):
    # an extra row for an image that is not in the folder is ignored; keys may start with ./
    overrides = image_folder_groups(tmp_path, rows=lambda files: [(f"./{f}", site_of(f.rsplit("/", 1)[1]))
                                                                  for f in files] + [("cat/99.png", "coastal")],
                                    **{"data.val_fraction": 0.3, "data.test_fraction": 0.3})
    _, dm = setup_data(compose, overrides)
    assert dm.group_names == ["rural", "urban"]
    for ds in dm.datasets.values():
        for k, i in enumerate(ds.indices):
            name = ds.source.paths[i].rsplit("/", 1)[1]
            assert dm.group_names[ds.sample_groups[k]] == site_of(name)
    counts = dm.split_info["groups"]["counts"]
    assert sum(map(sum, counts.values())) == 20 and sum(c[0] for c in counts.values()) == 8  # 0, 3, 6, 9 per class

    # keys may be bare file names when they are unique; these are not (cat/0.png and dog/0.png)
    by_name = image_folder_groups(tmp_path, rows=lambda files: [(f.rsplit("/", 1)[1], "x") for f in files])
    with pytest.raises(Exception, match="its keys are file names, but '0.png' names two images") as info:
        setup_data(compose, by_name)
    assert "\n" not in str(info.value)


def _drop_three(files):
    return [(f, site_of(f.rsplit("/", 1)[1])) for f in files[3:]]


@pytest.mark.parametrize("rows,extra,message", [
    (_drop_three, {}, "3 of 20 images have no group (no row, or an empty group cell), e.g. 'cat/0.png'"),
    (lambda files: [(f, "") if f == "dog/4.png" else (f, "urban") for f in files], {},
     "1 of 20 images have no group"),
    (lambda files: [(f, "urban") for f in files], {}, "group column 'site' holds 1 value(s) (urban) in the training"),
    (None, {"data.group_column": "country"}, "no column 'country' (data.group_column); its columns: path, site"),
    (lambda files: [(f, "urban") for f in files] + [("cat/1.png", "rural")], {},
     "'cat/1.png' is listed twice, with groups 'urban' and 'rural'"),
    (None, {"data.group_column": "null"}, "needs data.group_column=<its column holding the group>"),
    (None, {"data.groups_csv": "null"}, "data.group_column=site is a column of data.groups_csv"),
    (None, {"data.groups_csv": "/nowhere/meta.csv"}, "data.groups_csv: no such file: /nowhere/meta.csv"),
    (None, {"data.shortcut.kind": "tint"}, "data.groups_csv and data.shortcut both define the groups"),
])
def test_groups_file_mistakes_are_one_line(tmp_path, compose, rows, extra, message):
    with pytest.raises(Exception) as info:
        setup_data(compose, image_folder_groups(tmp_path, rows=rows, **extra))
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert type(info.value).__name__ in ("ConfigError", "DataError")


def test_a_group_missing_from_val_warns_and_is_refused_where_a_val_group_metric_decides(tmp_path, compose, caplog):
    from tl_lightning.data.groups import require_val_groups
    from tl_lightning.errors import DataError

    def rows(files):  # 'coastal' only in train
        return [(f, "coastal" if f.startswith("train/cat/") and f.endswith("5.png") else site_of(f.rsplit("/", 1)[1]))
                for f in files]

    overrides = image_folder_groups(tmp_path, rows=rows, layout="splits")
    cfg, dm = setup_data(compose, overrides)
    assert dm.group_names == ["coastal", "rural", "urban"]
    assert dm.split_info["groups"]["counts"]["val"][0] == 0 and dm.split_info["groups"]["absent_in_val"] == ["coastal"]
    assert "group(s) coastal have training samples but none in val" in caplog.text
    require_val_groups(cfg, dm.split_info)  # val/acc decides: training goes on
    for extra, key in ((["optimized_metric=val/worst_group_acc"], "optimized_metric=val/worst_group_acc"),
                       (["callbacks.fairness.enabled=true"], "callbacks.fairness.monitor=val/worst_group_acc")):
        cfg, _ = setup_data(compose, overrides + extra)
        with pytest.raises(DataError, match=f"{key}, but group\\(s\\) coastal have training samples and none in val"):
            require_val_groups(cfg, dm.split_info)


def test_group_dro_trains_on_metadata_groups(tmp_path):
    from tests.helpers import tiny, train_inprocess

    args = tiny("image_folder") + image_folder_groups(tmp_path) + [
        "loss=group_dro", "data.sampler=group_balanced", "trainer.max_epochs=1", "data.val_fraction=0.3",
        "data.test_fraction=0.3"]
    _, summary = train_inprocess(args, tmp_path / "run")
    assert set(summary["test_per_group"]) == {"rural", "urban"}
    assert "test/worst_group_acc" in summary["test"] and "test/eo_gap" in summary["test"]
    assert summary["split"]["groups"]["names"] == ["rural", "urban"]
