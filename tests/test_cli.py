"""End-to-end runs of train.py on tiny inputs, and one line + exit 2 for each bad input."""

import json
import os

import pytest

from tests.conftest import TEST_ENV, TINY, run_train, tiny
from tests.helpers import write_fashion_root, write_image_tree

pytestmark = pytest.mark.e2e


def test_tiny_finetune_run_writes_summary_checkpoints_and_config(tmp_path):
    proc = run_train(TINY + ["strategy=finetune", "seed=1"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["strategy"] == "finetune" and summary["backbone"] == "resnet18" and summary["seed"] == 1
    assert summary["split"]["sizes"]["train"] > 0 and summary["params"]["frozen"] == 0
    assert 0.0 <= summary["test"]["test/acc"] <= 1.0 and "val/f1_macro" in summary["val"]
    assert set(summary["test_per_class"]) == {"class0", "class1", "class2", "class3"}
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file() and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / ".hydra" / "config.yaml").is_file() and (tmp_path / "config_resolved.yaml").is_file()
    assert (tmp_path / "confusion_test.png").is_file() and (tmp_path / "confusion_val.png").is_file()
    assert (tmp_path / "csv" / "metrics.csv").read_text().count("val/acc") >= 1
    assert summary["best_checkpoint"].endswith("best.ckpt")


def test_linear_probe_on_real_weights_and_real_data(tmp_path):
    """The embedded EfficientNet-Lite0 weights on Debian's Fashion-MNIST, shrunk to seconds."""
    proc = run_train(["strategy=linear_probe", "data.samples_per_class=3", "data.eval_per_class=3",
                      "data.image_size=32", "trainer.max_epochs=1", "logger=csv",
                      "callbacks.rich_progress_bar.enabled=false"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["backbone"] == "efficientnet_lite0" and summary["pretrained"] is True
    assert summary["dataset"] == "fashion_mnist" and summary["split"]["class_counts"]["train"] == [3] * 10
    assert summary["params"]["trainable"] == 1280 * 10 + 10


def test_wandb_offline_run_files(tmp_path):
    proc = run_train([a for a in TINY if not a.startswith("logger=")] + ["logger=wandb", "trainer.max_epochs=1"],
                     tmp_path, env={"WANDB_MODE": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    records = list(runs[0].glob("run-*.wandb"))
    assert len(records) == 1
    blob = records[0].read_bytes()
    for text in (b"synthetic", b"finetune", b"resnet18", b"val/acc"):
        assert text in blob, text


def test_help_lists_group_choices(tmp_path):
    proc = run_train(["--help"], tmp_path)
    assert proc.returncode == 0
    for line in ("backbone: checkpoint, efficientnet_b0, efficientnet_lite0, inception_v3, resnet18, resnet50, timm, vgg16, vit_b_16",
                 "strategy: ewc, finetune, l2sp, linear_probe, lp_ft, progressive, scratch",
                 "logger: csv, many, none, tensorboard, wandb"):
        assert line in proc.stdout


def assert_user_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.parametrize("args,fragments", [
    (["backbone=resnet51"], ["backbone/resnet51", "valid options: ", "resnet50"]),
    (["strategy=ewc_typo"], ["strategy/ewc_typo", "linear_probe"]),
    (["data=mnist"], ["data/mnist", "fashion_mnist"]),
    (["trainer.max_epoch=3"], ["trainer.max_epoch"]),
    (["+data.samples_per_clas=3"], ["data.samples_per_clas"]),
    (["data.batch_size=big"], ["data.batch_size"]),
    (["backbone=timm", "backbone.name=resnet_does_not_exist", "data=synthetic"], ["unknown timm model 'resnet_does_not_exist'"]),
])
def test_bad_config_gets_one_line_and_exit_2(tmp_path, args, fragments):
    assert_user_error(run_train(args, tmp_path), *fragments)


def test_missing_data_root(tmp_path):
    assert_user_error(run_train(tiny("image_folder") + [f"data.root={tmp_path}/nope"], tmp_path / "run"),
                      "data.root: no such directory", "nope")


def test_empty_class_folder_and_non_image_file(tmp_path):
    root = write_image_tree(tmp_path / "imgs", per_class=5)
    os.makedirs(os.path.join(root, "empty"))
    assert_user_error(run_train(tiny("image_folder") + [f"data.root={root}"], tmp_path / "r1"),
                      "class folder", "empty has no images")
    os.rmdir(os.path.join(root, "empty"))
    (tmp_path / "imgs" / "cat" / "readme.md").write_text("x")
    assert_user_error(run_train(tiny("image_folder") + [f"data.root={root}"], tmp_path / "r2"),
                      "not an image file", "cat/readme.md")


def test_corrupt_image_is_named(tmp_path):
    root = write_image_tree(tmp_path / "imgs", per_class=5)
    (tmp_path / "imgs" / "dog" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    assert_user_error(run_train(tiny("image_folder") + [f"data.root={root}", "data.val_fraction=0.2"], tmp_path / "r"),
                      "corrupt or unreadable image", "dog/2.png")


def test_labels_out_of_range(tmp_path):
    root = write_fashion_root(tmp_path / "fm", bad_label=11)
    assert_user_error(run_train(tiny("fashion_mnist") + [f"data.root={root}"], tmp_path / "r"),
                      "label 11 is out of range", "0..9")


def test_budget_larger_than_class(tmp_path):
    assert_user_error(run_train(TINY + ["data.samples_per_class=1000"], tmp_path / "r"),
                      "samples_per_class=1000", "has only")


def test_weights_of_another_architecture(tmp_path):
    import torch
    import torchvision

    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    args = TINY + ["backbone.pretrained=true", f"backbone.weights={path}"]
    assert_user_error(run_train(args, tmp_path / "r"), "does not fit architecture resnet18")


def test_uncached_weights_fail_cleanly_within_seconds(tmp_path):
    import time

    start = time.time()
    proc = run_train(["backbone=resnet50", "strategy=finetune"], tmp_path / "r",
                     env={"TORCH_HOME": str(tmp_path / "torch"), "TL_OFFLINE": ""})
    assert_user_error(proc, "resnet50-11ad3fa6.pth", "python scripts/prefetch_weights.py backbone=resnet50")
    assert time.time() - start < 60


def test_resnet50_finetune_trains_from_cached_weights(tmp_path):
    """The README's `backbone=resnet50 strategy=finetune`, with weights placed where torchvision caches them."""
    import torch
    import torchvision

    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    reference = torchvision.models.resnet50()
    torch.save(reference.state_dict(), cache / "resnet50-11ad3fa6.pth")
    args = [a for a in TINY if not a.startswith("backbone")] + [
        "backbone=resnet50", "strategy=finetune", "trainer.max_epochs=1", "data.per_class=6"]
    proc = run_train(args, tmp_path / "run", env={"TORCH_HOME": str(tmp_path / "torch")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["backbone"] == "resnet50" and summary["pretrained"] is True and summary["global_step"] > 0
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    moved = state["backbone.model.conv1.weight"] - reference.conv1.weight
    assert 0 < moved.abs().max() < 0.05, "fine-tuning starts from the cached weights and moves them a little"


def test_failed_run_leaves_earlier_results_intact(tmp_path):
    (tmp_path / "summary.json").write_text('{"earlier": true}')
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.ckpt").write_bytes(b"earlier")
    assert_user_error(run_train(TINY + ["data.samples_per_class=1000"], tmp_path), "samples_per_class")
    assert json.loads((tmp_path / "summary.json").read_text()) == {"earlier": True}
    assert (tmp_path / "checkpoints" / "best.ckpt").read_bytes() == b"earlier"


def test_multirun_jobs_get_their_own_dirs_and_wandb_runs_in_one_group(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    sweep = tmp_path / "sweep_abc"
    args = [a for a in TINY if not a.startswith("logger=")] + ["logger=wandb", "trainer.max_epochs=1"]
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", f"hydra.sweep.dir={sweep}", "seed=0,1", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **TEST_ENV, "WANDB_MODE": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_ids = set()
    for job, seed in (("0", 0), ("1", 1)):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["seed"] == seed
        runs = list((sweep / job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, runs
        run_ids.add(runs[0].name.rsplit("-", 1)[-1])
        assert b"sweep_abc" in next(runs[0].glob("run-*.wandb")).read_bytes(), "group = the sweep's dir name"
    assert len(run_ids) == 2, "each job its own W&B run"
