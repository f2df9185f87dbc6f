"""The seams: a strategy, a criterion and a summary-contributing callback, each registered from this file with its
YAML in a config folder of its own (Hydra's search path), train end to end with no file under tl_lightning/ or
conf/ edited (docs/contracts.md lists what each kind of extension touches)."""

import math

import lightning as L
import torch

from tests.helpers import TINY, train_inprocess
from tl_lightning.registry import CRITERIA, STRATEGIES
from tl_lightning.strategies.base import Strategy, set_trainable


class TopGroupOnly(Strategy):
    """Trains the head and the backbone's top layer group only."""

    name = "top_group_test"

    def setup(self, module) -> None:
        set_trainable(module.backbone, False)
        set_trainable(module.head, True)
        for p in module.backbone.layer_groups[-1].params:
            p.requires_grad_(True)
        self.trained = module.backbone.layer_groups[-1].name

    def param_groups(self, module):
        return self.backbone_groups(module) + [self.head_group(module)]

    def summary_info(self):
        return {"trained_group": self.trained}


class SquaredError(torch.nn.Module):
    """Brier-style criterion: squared error between the softmax and the one-hot target."""

    def forward(self, logits, target):
        one_hot = torch.nn.functional.one_hot(target, logits.shape[-1]).float()
        return ((logits.softmax(-1) - one_hot) ** 2).sum(-1).mean()


class CountBatches(L.Callback):
    """Counts training batches; reports them as its own summary section."""

    def __init__(self, label: str = "batches"):
        self.label, self.count = label, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.count += 1

    def summary_sections(self):
        return {"counted": {self.label: self.count}}


def test_a_strategy_a_criterion_and_a_callback_from_outside_train_end_to_end(tmp_path):
    conf = tmp_path / "conf"
    (conf / "strategy").mkdir(parents=True)
    (conf / "loss").mkdir()
    (conf / "strategy" / "top_group_test.yaml").write_text("defaults:\n  - schema\n  - _self_\n\nname: top_group_test\n"
                                                            "backbone_lr_mult: 0.5\n")
    (conf / "loss" / "squared_test.yaml").write_text("name: squared_test\n")
    STRATEGIES.register()(TopGroupOnly)
    CRITERIA.register("squared_test")(lambda cfg, counts=None, group_counts=None: SquaredError())
    try:
        args = TINY + [f"hydra.searchpath=[file://{conf}]", "strategy=top_group_test", "loss=squared_test",
                       "+callbacks.extra.count={_target_: tests.test_extension.CountBatches, label: train}"]
        metrics, summary = train_inprocess(args, tmp_path / "run")
    finally:
        STRATEGIES.remove("top_group_test")
        CRITERIA.remove("squared_test")
    assert summary["strategy"] == "top_group_test"
    assert summary["strategy_info"] == {"trained_group": "layer4"}
    per_epoch = math.ceil(summary["split"]["sizes"]["train"] / 8)  # data.batch_size=8
    assert summary["counted"] == {"train": summary["epochs_run"] * per_epoch}
    assert "train/squared_test" in metrics and metrics["train/squared_test"] > 0
    trainable = summary["params"]["trainable"]
    assert 0 < trainable < summary["params"]["trainable"] + summary["params"]["frozen"]
