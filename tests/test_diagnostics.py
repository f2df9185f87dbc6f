"""Diagnostics while training (issue: diagnostics): prediction collapse, plateau / drop, calibration."""

import logging
from types import SimpleNamespace

import pytest
import torch

from tl_lightning.callbacks.diagnostics import CollapseWatch, PlateauWatch
from tl_lightning.metrics import StageMetrics


def test_prediction_spread_and_calibration_by_hand():
    metrics = StageMetrics("val", 3)
    # labels 0, 0, 1, 2; predictions 0, 0, 0, 1 with confidences 0.9, 0.8, 0.6, 0.5
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.25, 0.5, 0.25]])
    metrics.update(probs.log(), torch.tensor([0, 0, 1, 2]))
    out = {k: float(v) for k, v in metrics.diagnostics().items()}
    # predicted histogram (3/4, 1/4, 0) against the labels' (2/4, 1/4, 1/4): TV = (1/4 + 0 + 1/4) / 2
    assert out["val/pred_tv"] == pytest.approx(0.25) and out["val/top_class_share"] == pytest.approx(0.75)
    # four bins of one sample each: (|0.9 - 1| + |0.8 - 1| + |0.6 - 0| + |0.5 - 0|) / 4
    assert out["val/ece"] == pytest.approx((0.1 + 0.2 + 0.6 + 0.5) / 4, abs=1e-6)
    metrics.reset()
    metrics.update(torch.eye(3)[[0, 0, 0, 0]] * 10, torch.tensor([0, 1, 2, 0]))  # everything predicted as class 0
    assert float(metrics.diagnostics()["val/pred_tv"]) == pytest.approx(0.5)
    assert {"val/pred_tv", "val/top_class_share", "val/ece"} <= metrics.names(["a", "b", "c"])


def feed(callback, values, metric):
    for epoch, value in enumerate(values):
        metrics = {k: torch.tensor(v) for k, v in (value if isinstance(value, dict) else {metric: value}).items()}
        callback.on_validation_end(SimpleNamespace(sanity_checking=False, current_epoch=epoch,
                                                   callback_metrics=metrics), None)


def test_collapse_warns_once_at_the_first_epoch_over_the_threshold(caplog):
    watch = CollapseWatch(max_tv=0.5)
    with caplog.at_level(logging.WARNING):
        feed(watch, [{"val/pred_tv": tv, "val/top_class_share": share}
                     for tv, share in ((0.1, 0.2), (0.45, 0.5), (0.62, 0.7), (0.9, 1.0))], None)
    assert watch.warning == {"epoch": 2, "pred_tv": pytest.approx(0.62), "top_class_share": pytest.approx(0.7)}
    assert caplog.text.count("predictions are collapsing at epoch 2") == 1 and "70 %" in caplog.text
    assert [h["epoch"] for h in watch.summary()["per_epoch"]] == [0, 1, 2, 3]


@pytest.mark.parametrize("mode,values,kind,epoch", [
    ("max", [0.5, 0.7, 0.8, 0.78, 0.75, 0.74, 0.9], "drop", 5),  # best at 2, then three falls
    ("max", [0.5, 0.7, 0.8, 0.78, 0.79, 0.74, 0.73], None, None),  # not falling every epoch: no warning
    ("max", [0.1, 0.102, 0.099, 0.1, 0.5], "flat", 3),  # three epochs within 0.005 of epoch 0
    ("min", [1.0, 0.8, 0.9, 1.0, 1.2], "drop", 4),  # a loss rising for three epochs after its best
])
def test_plateau_and_drop_are_named_with_their_epoch(caplog, mode, values, kind, epoch):
    watch = PlateauWatch("val/acc" if mode == "max" else "val/loss", mode=mode, patience=3, min_delta=0.005)
    with caplog.at_level(logging.WARNING):
        feed(watch, values, watch.monitor)
    assert [(e["kind"], e["epoch"]) for e in watch.events] == ([(kind, epoch)] if kind else [])
    if kind == "drop":
        assert "since its best" in caplog.text and f"epoch {epoch})" in caplog.text
    if kind == "flat":
        assert "has not moved by more than 0.005 from epoch 0's 0.1000" in caplog.text
