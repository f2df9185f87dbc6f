"""Training recipes: averaged weights (EMA, SWA), soft-target Mixup / CutMix, temperature scaling, k-fold splits, the
L-BFGS linear probe against scikit-learn."""

import lightning as L
import pytest
import torch
from torch import nn

from tl_lightning.callbacks.weight_averaging import AveragedWeights


class Toy(L.LightningModule):
    """A linear layer on fixed batches, plain SGD: its weights after every step are easy to record."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(3, 2)
        self.x, self.y = torch.randn(24, 3), torch.randint(0, 2, (24,))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.layer(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", nn.functional.cross_entropy(self.layer(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)

    def loader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.x, self.y), batch_size=4)


class Record(L.Callback):
    def __init__(self):
        self.steps, self.epochs = [], []

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.steps.append(pl_module.layer.weight.detach().clone())

    def on_validation_epoch_start(self, trainer, pl_module):  # the epoch's end, before the average is swapped in
        if not trainer.sanity_checking:
            self.epochs.append(pl_module.layer.weight.detach().clone())


def _fit(averaging, epochs=2):
    model, record = Toy(), Record()
    trainer = L.Trainer(max_epochs=epochs, callbacks=[record, averaging], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, model.loader(), model.loader())
    return model, record


def test_ema_weights_after_n_steps_are_the_closed_form_average():
    model, record = _fit(AveragedWeights(kind="ema", decay=0.8, warmup=True))
    w = record.steps  # the training weights after steps 1 .. N (12 steps)
    assert len(w) == 12
    # avg_1 = w_1; then avg <- d avg + (1 - d) w_{n+1} with d = min(0.8, (1 + n) / (10 + n)) after n updates
    decays = [min(0.8, (1.0 + n) / (10.0 + n)) for n in range(1, len(w))]
    coeff = [0.0] * len(w)
    coeff[0] = 1.0
    for k, d in enumerate(decays, start=1):
        coeff = [c * d for c in coeff]
        coeff[k] = 1.0 - d
    closed = sum(c * wk for c, wk in zip(coeff, w))
    assert abs(sum(coeff) - 1.0) < 1e-12
    assert torch.allclose(model.layer.weight, closed, atol=1e-6)  # fit ends with the averaged weights in the model
    assert not torch.allclose(model.layer.weight, w[-1], atol=1e-3)


def test_swa_is_the_equal_average_of_the_epoch_ends_from_start_epoch():
    model, record = _fit(AveragedWeights(kind="swa", start_epoch=1), epochs=4)
    assert len(record.epochs) == 4
    assert torch.allclose(model.layer.weight, torch.stack(record.epochs[1:]).mean(0), atol=1e-6)


def test_before_the_first_swa_update_the_training_weights_are_validated_and_kept():
    """A run that ends before start_epoch (early stopping, a short run) keeps its training weights, never the
    empty average's copy of the initial ones."""
    model, record = _fit(AveragedWeights(kind="swa", start_epoch=5), epochs=2)
    assert torch.equal(model.layer.weight, record.epochs[-1])
    assert not torch.allclose(model.layer.weight, Toy().layer.weight)


def test_temperature_scaling_lowers_the_nll_of_an_overconfident_model():
    from tl_lightning.callbacks.calibration import fit_temperature, fold_into_head, scores

    torch.manual_seed(0)
    # calibrated logits (labels drawn from their own softmax), then made 4x overconfident
    calibrated = torch.randn(2000, 5) * 1.5
    target = torch.multinomial(calibrated.softmax(-1), 1).squeeze(1)
    logits = 4.0 * calibrated
    t = fit_temperature(logits, target)
    assert 3.5 < t < 4.5
    before, after = scores(logits, target), scores(logits, target, t)
    assert after["nll"] < before["nll"] - 0.1 and after["ece"] < before["ece"] / 2
    head = nn.Sequential(nn.Dropout(0.0), nn.Linear(3, 5))
    x = torch.randn(7, 3)
    expected = head(x) / t
    fold_into_head(head, t)
    assert torch.allclose(head(x), expected, atol=1e-6)  # the head itself now gives logits / T


def test_temperature_scaling_in_a_run_reaches_the_checkpoint_eval_and_the_test(tmp_path):
    from tests.helpers import TINY, train_inprocess
    from tests.test_deploy import tool_config
    from tl_lightning.deploy.evaluate import evaluate

    _, plain = train_inprocess(TINY + ["trainer.max_epochs=1"], tmp_path / "plain")
    _, scaled = train_inprocess(TINY + ["trainer.max_epochs=1", "callbacks.temperature_scaling.enabled=true"],
                                tmp_path / "scaled")
    record = scaled["temperature_scaling"]
    assert record["val_nll_after"] <= record["val_nll_before"]
    ckpt = torch.load(tmp_path / "scaled" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["tl_lightning"]["temperature"] == record["temperature"] != 1.0
    # the same weights otherwise: the same predictions, other probabilities
    assert scaled["test"]["test/acc"] == plain["test"]["test/acc"]
    assert scaled["test"]["test/loss"] != plain["test"]["test/loss"]
    ckpt_path = tmp_path / "scaled" / "checkpoints" / "best.ckpt"
    again = evaluate(tool_config("eval", [f"ckpt_path={ckpt_path}", "logger=none", "progress_bar=false"], tmp_path),
                     str(tmp_path / "eval"))
    assert again["test"]["test/acc"] == pytest.approx(scaled["test"]["test/acc"], abs=1e-6)
    assert again["test"]["test/loss"] == pytest.approx(scaled["test"]["test/loss"], abs=1e-5)  # calibrated, too


def test_folds_partition_the_pool_with_the_same_test_set_and_the_budget_inside_the_training_folds():
    from omegaconf import OmegaConf

    from tl_lightning.backbones.preprocessing import ImagePreprocessing, InputSpec
    from tl_lightning.compose import compose_config
    from tl_lightning.data.registry import build_datamodule

    prep = ImagePreprocessing(InputSpec(size=28, mean=(0.5,), std=(0.5,), channels=1))
    splits = []
    for fold in range(4):
        cfg = compose_config(["data=digits", "data.folds=4", f"data.fold={fold}", "data.samples_per_class=5"], "/tmp")
        dm = build_datamodule(cfg.data, prep, cfg.paths.data_dir)
        dm.setup("fit")
        splits.append({k: set(dm.datasets[k].indices.tolist()) for k in ("train", "val", "test")})
        assert dm.split_info["folds"] == {"k": 4, "fold": fold}
        assert OmegaConf.select(cfg, "data.fold") == fold
    vals = [s["val"] for s in splits]
    assert all(not (a & b) for i, a in enumerate(vals) for b in vals[i + 1:])  # no overlap between folds
    pool = set().union(*vals)
    assert all(s["test"] == splits[0]["test"] and not (s["test"] & pool) for s in splits)  # one test set, outside
    for s in splits:
        assert s["train"] <= pool - s["val"] and len(s["train"]) == 50  # the budget from the training folds
    sizes = sorted(len(v) for v in vals)
    assert sizes[-1] - sizes[0] <= 10  # stratified: near-equal folds (10 classes)


def test_report_aggregates_the_folds_of_a_k_fold_sweep_into_one_row(tmp_path):
    import json

    from tl_lightning.cli.report import aggregate, load_summaries

    for fold, acc in enumerate((0.70, 0.80, 0.75)):
        run = tmp_path / str(fold)
        run.mkdir()
        (run / "summary.json").write_text(json.dumps({
            "backbone": "b", "dataset": "d", "strategy": "finetune", "samples_per_class": 20, "seed": 0,
            "split": {"folds": {"k": 3, "fold": fold}}, "test": {"test/acc": acc}}))
    (row,) = aggregate(load_summaries(tmp_path), ["test/acc"])
    assert len(row["seeds"]) == 3 and row["stats"]["test/acc"][0] == pytest.approx(0.75)
    assert row["stats"]["test/acc"][1] == pytest.approx(0.05)


@pytest.mark.parametrize("loss", ["ce", "class_balanced", "logit_adjusted", "balanced_softmax", "focal", "group_dro"])
def test_mixup_soft_targets_with_each_criterion_or_a_one_line_refusal(loss, tmp_path):
    from omegaconf import OmegaConf

    from tests.helpers import TINY, expect_user_error
    from tl_lightning.callbacks.mixup import MixupCutmix
    from tl_lightning.config.schema import SOFT_TARGET_CRITERIA, LossConf
    from tl_lightning.losses.criteria import build_criterion

    groups = ["data.shortcut.kind=tint"] if loss == "group_dro" else []
    args = TINY + [f"loss={loss}", "callbacks.mixup.enabled=true", "callbacks.mixup.cutmix_alpha=1.0", *groups]
    if loss not in SOFT_TARGET_CRITERIA:
        expect_user_error(args, tmp_path, "callbacks.mixup gives soft targets", f"loss={loss} cannot take")
        return
    mixer = MixupCutmix(mixup_alpha=0.4, cutmix_alpha=1.0)
    mixer.setup(None, type("M", (), {"task": type("T", (), {"num_classes": 3})})(), "fit")
    mixer.on_train_epoch_start(type("Tr", (), {"current_epoch": 0, "global_rank": 0})(), None)
    x, y = torch.randn(8, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    batch = {"inputs": x.clone(), "target": y}
    mixer.on_train_batch_start(None, None, batch, 0)
    soft = batch["soft_target"]
    assert soft.shape == (8, 3) and torch.allclose(soft.sum(1), torch.ones(8)) and (soft.max(1).values < 1).any()
    cfg = OmegaConf.merge(OmegaConf.structured(LossConf), {"name": loss})
    criterion = build_criterion(cfg, counts=[3, 3, 2])
    logits = torch.randn(8, 3, requires_grad=True)
    value = criterion(logits, soft)
    value.backward()
    assert torch.isfinite(value) and logits.grad.abs().sum() > 0
    # one-hot soft targets give the hard-label loss
    assert torch.allclose(criterion(logits, torch.nn.functional.one_hot(y, 3).float()), criterion(logits, y), atol=1e-6)


def test_a_run_with_mixup_and_cutmix_trains_on_mixed_batches(tmp_path):
    from tests.helpers import TINY, train_inprocess

    _, summary = train_inprocess(TINY + ["trainer.max_epochs=1", "callbacks.mixup.enabled=true",
                                         "callbacks.mixup.cutmix_alpha=1.0"], tmp_path)
    assert summary["mixup"]["mixed_batches"] >= 3 and summary["test"]["test/acc"] >= 0


def test_the_lbfgs_probe_is_scikit_learns_logistic_regression():
    """For each C the fit is scikit-learn's L2 multinomial logistic regression (same parameterisation, bias not
    penalised), and the grid's choice is the C with the best validation accuracy."""
    from sklearn.linear_model import LogisticRegression

    from tl_lightning.strategies.lbfgs_probe import fit_logistic

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 1.5
    y = torch.randint(0, 3, (240,), generator=g)
    x = centres[y] + torch.randn(240, 8, generator=g)
    (tx, ty), (vx, vy) = (x[:120], y[:120]), (x[120:], y[120:])
    for c in (0.01, 1.0, 100.0):
        fit = fit_logistic(tx, ty, vx, vy, 3, [c], tol=1e-8)
        ref = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(tx.double().numpy(), ty.numpy())
        assert torch.allclose(fit["weight"].double(), torch.from_numpy(ref.coef_), atol=2e-3), c
        assert torch.allclose(fit["bias"].double(), torch.from_numpy(ref.intercept_), atol=2e-3), c
    grid = [0.001, 0.01, 0.1, 1.0, 10.0]
    fit = fit_logistic(tx, ty, vx, vy, 3, grid)
    accs = [LogisticRegression(C=c, max_iter=10_000).fit(tx.numpy(), ty.numpy()).score(vx.numpy(), vy.numpy())
            for c in grid]
    assert [round(r["val_acc"], 4) for r in fit["grid"]] == [round(a, 4) for a in accs]
    assert fit["C"] == grid[max(range(len(grid)), key=lambda k: (accs[k], -fit["grid"][k]["val_loss"]))]
