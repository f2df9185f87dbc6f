"""Training runs in this process on tiny inputs: what a run writes, the inference model a checkpoint
rebuilds, real weights on real data, and a loss term added from outside module.py and run.py."""

import csv
import json

import pytest
import torch

from tests.helpers import TINY, tiny, train_inprocess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def finetune_run(tmp_path_factory):
    """One tiny fine-tuning run, logged to W&B (offline), CSV and TensorBoard, shared by the tests below."""
    run_dir = tmp_path_factory.mktemp("finetune")
    args = [a for a in TINY if not a.startswith("logger=")] + ["logger=many", "strategy=finetune", "seed=1"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "")
        metrics, summary = train_inprocess(args, run_dir)
    return run_dir, metrics, summary



def test_one_learning_rate_per_schedule_and_the_best_epoch(finetune_run):
    """lr/head and lr/backbone (the top backbone group) instead of one lr-AdamW/<group> per parameter group."""
    run_dir, _, summary = finetune_run
    header = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    rates = [h for h in header if h.startswith("lr")]
    assert rates == ["lr/backbone", "lr/head"], rates
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    first = next(r for r in rows if r["lr/head"])
    assert float(first["lr/head"]) > float(first["lr/backbone"]) > 0  # finetune: the backbone at backbone_lr_mult
    best = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=True)
    assert summary["best_epoch"] == best["epoch"]

def test_run_writes_summary_checkpoints_pictures_and_resolved_config(finetune_run):
    run_dir, metrics, summary = finetune_run
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["strategy"] == "finetune" and summary["backbone"] == "resnet18" and summary["seed"] == 1
    sizes = summary["split"]["sizes"]
    # 4 classes x 12 images: 20 % test (10), 20 % of the rest val (8), the other 30 train
    assert sizes == {"train": 30, "val": 8, "test": 10} and summary["params"]["frozen"] == 0
    assert summary["global_step"] == 2 * 4 and summary["epochs_run"] == 2  # 2 epochs of ceil(30 / 8) steps
    assert summary["test"]["test/acc"] == metrics["test/acc"] and "val/f1_macro" in summary["val"]
    per_class = summary["test_per_class"]
    assert set(per_class) == {"class0", "class1", "class2", "class3"}
    diagnostics = summary["diagnostics"]  # calibration and prediction spread, val and test; the watches' records
    assert 0.0 <= diagnostics["calibration"]["test_ece"] <= 1.0 and diagnostics["calibration"]["val_ece"] is not None
    assert 0.25 <= diagnostics["predictions"]["test/top_class_share"] <= 1.0  # 4 classes
    assert [h["epoch"] for h in diagnostics["collapse"]["per_epoch"]] == [0, 1]
    assert diagnostics["plateau"]["metric"] == "val/acc"
    counts = summary["split"]["class_counts"]["test"]
    assert sum(a * n for a, n in zip(per_class.values(), counts)) / sum(counts) == pytest.approx(summary["test"]["test/acc"])
    assert summary["best_checkpoint"] == str(run_dir / "checkpoints" / "best.ckpt")
    for name in ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "config_resolved.yaml",
                 "confusion_test.png", "confusion_val.png"):
        assert (run_dir / name).exists(), name


def test_per_class_and_per_group_names_keep_their_slashes():
    from tl_lightning.summary import test_sections

    sections = test_sections({"test/acc": 0.5, "test/acc_class/T-shirt/top": 0.25, "test/acc_class/Bag": 0.75,
                              "test/acc_group/Coat/aligned": 1.0, "val/acc": 0.4})
    assert sections == {"test": {"test/acc": 0.5}, "test_per_class": {"T-shirt/top": 0.25, "Bag": 0.75},
                        "test_per_group": {"Coat/aligned": 1.0}}


def test_best_checkpoint_holds_what_inference_needs_and_last_what_resume_needs(finetune_run):
    from tl_lightning.errors import ConfigError
    from tl_lightning.resume import resolve_resume

    run_dir, _, _ = finetune_run
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert "optimizer_states" not in best and "optimizer_states" in last and "lr_schedulers" in last
    record = best["tl_lightning"]
    assert record["class_names"] == ["class0", "class1", "class2", "class3"] and record["strategy"] == "finetune"
    assert record["architecture"] == {"kind": "torchvision", "name": "resnet18"} and record["input_spec"]["size"] == 32
    assert (run_dir / "checkpoints" / "best.ckpt").stat().st_size < 0.6 * (run_dir / "checkpoints" / "last.ckpt").stat().st_size
    assert resolve_resume(str(run_dir / "checkpoints" / "last.ckpt"), "/elsewhere") == str(run_dir / "checkpoints" / "last.ckpt")
    with pytest.raises(ConfigError, match="holds weights only .*resume from that run's checkpoints/last.ckpt"):
        resolve_resume(str(run_dir / "checkpoints" / "best.ckpt"), "/elsewhere")


def test_loggers_get_the_metrics(finetune_run):
    run_dir, _, summary = finetune_run
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    val_acc = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    assert len(val_acc) == 2 and summary["best_score"] == pytest.approx(max(val_acc))
    assert float(next(r["test/acc"] for r in rows if r.get("test/acc"))) == pytest.approx(summary["test"]["test/acc"])
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    blob = next(runs[0].glob("run-*.wandb")).read_bytes()
    for text in (b"synthetic", b"finetune", b"resnet18", b"val/acc", b"test/acc"):
        assert text in blob, text
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_inference_model_from_the_checkpoint_reproduces_the_test_accuracy(finetune_run):
    from tl_lightning import inference
    from tl_lightning.batch import accuracy, collect
    from tl_lightning.compose import compose_config
    from tl_lightning.data import build_datamodule
    from tl_lightning.data.base import batch_size_for

    run_dir, _, summary = finetune_run
    model = inference.load(str(run_dir / "checkpoints" / "best.ckpt"))
    assert not model.training and model.class_names == ["class0", "class1", "class2", "class3"]
    assert model.input_spec.size == 32 and model.config["strategy"]["name"] == "finetune"
    assert not hasattr(model, "strategy")
    cfg = compose_config(TINY + ["seed=1"], str(run_dir))
    dm = build_datamodule(cfg.data, model.preprocessing)
    dm.setup("test")
    outputs = collect(lambda b: model(b["inputs"]), dm.plain_loader("test", batch_size_for(cfg.data, "test")), [model])
    assert accuracy(outputs) == pytest.approx(summary["test"]["test/acc"])
    state = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(model.head[1].weight, state["head.1.weight"])


def test_linear_probe_on_real_weights_and_real_data(tmp_path):
    """The embedded EfficientNet-Lite0 weights on Debian's Fashion-MNIST, shrunk to seconds; with the Grad-CAM
    grid of callbacks.saliency, which runs the images through the frozen backbone of a probe trained on
    cached features."""
    _, summary = train_inprocess(["strategy=linear_probe", "data.samples_per_class=3", "data.eval_per_class=3",
                                  "data.image_size=32", "data.augment=none", "trainer.max_epochs=1", "logger=csv",
                                  "callbacks.rich_progress_bar.enabled=false", "callbacks.saliency.enabled=true",
                                  "callbacks.saliency.per_class=1"], tmp_path)
    assert summary["backbone"] == "efficientnet_lite0" and summary["pretrained"] is True
    assert summary["dataset"] == "fashion_mnist" and summary["split"]["class_counts"]["train"] == [3] * 10
    assert summary["params"]["trainable"] == 1280 * 10 + 10
    assert summary["feature_cache"] is not None and summary["diagnostics"]["saliency"] == str(tmp_path / "saliency.png")
    from PIL import Image

    assert Image.open(tmp_path / "saliency.png").size[1] > 400  # ten rows, one per class


def test_resnet50_finetune_trains_from_cached_weights(tmp_path, monkeypatch):
    """The README's `backbone=resnet50 strategy=finetune`, with weights placed where torchvision caches them."""
    import torchvision

    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    reference = torchvision.models.resnet50()
    torch.save(reference.state_dict(), cache / "resnet50-11ad3fa6.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    args = [a for a in TINY if not a.startswith("backbone")] + [
        "backbone=resnet50", "strategy=finetune", "trainer.max_epochs=1", "data.per_class=6"]
    _, summary = train_inprocess(args, tmp_path / "run")
    assert summary["backbone"] == "resnet50" and summary["pretrained"] is True and summary["global_step"] > 0
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    moved = state["backbone.model.conv1.weight"] - reference.conv1.weight
    assert 0 < moved.abs().max() < 0.05, "fine-tuning starts from the cached weights and moves them a little"


def test_a_loss_term_registered_from_outside_combines_with_the_strategy_penalty(tmp_path):
    """A new term needs only a registered factory and config: module.py and run.py stay as they are."""
    from tl_lightning.losses import LossTerm
    from tl_lightning.registry import LOSS_TERMS

    class LogitL2(LossTerm):
        def __init__(self, name, node):
            self.name, self.weight = name, float(node.weight)

        def __call__(self, module, batch, logits):
            assert set(batch) == {"inputs", "target", "index", "group", "features"}
            return self.weight * (logits ** 2).mean()

    LOSS_TERMS.register("logit_l2_test")(LogitL2)
    try:
        args = tiny() + ["strategy=ewc", "strategy.fisher_samples=8", "loss.label_smoothing=0.1",
                         "+loss.terms.reg={kind: logit_l2_test, weight: 0.5}"]
        train_inprocess(args, tmp_path)
    finally:
        LOSS_TERMS.remove("logit_l2_test")
    rows = [r for r in csv.DictReader((tmp_path / "csv" / "metrics.csv").open()) if r.get("train/reg")]
    assert len(rows) == 2
    for row in rows:
        parts = float(row["train/ce"]) + float(row["train/ewc"]) + float(row["train/reg"])
        assert float(row["train/loss_epoch"]) == pytest.approx(parts, rel=1e-4)
        assert float(row["train/reg"]) > 0


def test_best_epoch_is_the_first_epoch_of_a_tied_best_score():
    """ModelCheckpoint keeps the earlier checkpoint on a tie (mode max saves on >): so does the best epoch."""
    from types import SimpleNamespace

    from tl_lightning.callbacks.best_epoch import BestEpoch

    callback = BestEpoch()
    for epoch, score in enumerate([0.5, 0.5, 0.7, 0.7, 0.6]):
        trainer = SimpleNamespace(sanity_checking=False, current_epoch=epoch, callback_metrics={"val/acc": score},
                                  checkpoint_callback=SimpleNamespace(monitor="val/acc", mode="max"))
        callback.on_validation_end(trainer, None)
        assert callback.epoch == (0 if epoch < 2 else 2)
    restored = BestEpoch()
    restored.load_state_dict(callback.state_dict())
    trainer.callback_metrics["val/acc"] = 0.7
    restored.on_validation_end(trainer, None)  # the same best after a resume: still epoch 2
    assert restored.epoch == 2


@pytest.mark.parametrize("scores, best", [((0.5,), 0), ((0.5, 0.9, 0.7), 1), ((0.6, 0.4, 0.6, 0.5), 0)])
def test_best_epoch_under_a_real_trainer_is_the_epoch_of_the_best_checkpoint(tmp_path, scores, best):
    """Lightning runs ModelCheckpoint after every other callback: the best epoch is read once it has saved (a
    one-epoch run used to have none, and a best followed by a worse epoch was credited to the worse one)."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from tl_lightning.callbacks.best_epoch import BestEpoch
    from tl_lightning.callbacks.factory import run_checkpoints

    class Scripted(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, _):
            return self.layer(batch[0]).sum()

        def validation_step(self, batch, _):
            self.log("val/acc", scores[self.current_epoch])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    data = DataLoader(TensorDataset(torch.zeros(2, 2)), batch_size=2)
    callback = BestEpoch()
    trainer = L.Trainer(max_epochs=len(scores), logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[callback, *run_checkpoints(str(tmp_path), "val/acc")], num_sanity_val_steps=0)
    trainer.fit(Scripted(), train_dataloaders=data, val_dataloaders=data)
    saved = torch.load(trainer.checkpoint_callback.best_model_path, map_location="cpu", weights_only=True)
    assert callback.epoch == best == saved["epoch"]
