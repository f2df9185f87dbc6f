"""The pixel / TF-IDF baseline: the same split fingerprint as a training run, --features on the probe's cache, and its
bad arguments."""

import json

import pytest

from tl_lightning.backbones.preprocessing import ImagePreprocessing, InputSpec
from tl_lightning.cli.pixel_baseline import main
from tl_lightning.compose import compose_config
from tl_lightning.data.registry import build_datamodule


def test_pixel_baseline_scores_the_same_splits_as_a_training_run(tmp_path):
    overrides = ["data=digits", "data.eval_per_class=20"]
    assert main(["--out", str(tmp_path), "--budgets", "5,20", "--seeds", "1"] + overrides) == 0
    five = json.loads((tmp_path / "spc5_s1" / "summary.json").read_text())
    twenty = json.loads((tmp_path / "spc20_s1" / "summary.json").read_text())
    # the split a training run with the same overrides and seed would use
    cfg = compose_config(overrides + ["seed=1", "data.samples_per_class=20"], output_dir=str(tmp_path))
    dm = build_datamodule(cfg.data, ImagePreprocessing(InputSpec(32, (0.5,), (0.5,))), cfg.paths.data_dir)
    dm.setup("fit")
    assert twenty["split"]["fingerprint"] == dm.split_info["fingerprint"]
    assert twenty["split"]["sizes"] == {"train": 200, "val": 200, "test": 200}
    assert five["split"]["fingerprint"] != twenty["split"]["fingerprint"]
    # 8x8 digits are easy for pixels: far above chance (10 %), and more labels help
    assert twenty["test"]["test/acc"] > 0.8 and twenty["test"]["test/acc"] > five["test"]["test/acc"]
    assert twenty["backbone"] == "pixels" and twenty["chosen_C"] in (0.001, 0.01, 0.1, 1.0)


def test_features_baseline_fits_scikit_learn_on_the_probes_own_cache(tmp_path):
    """--features: scikit-learn's logistic regression on the very feature cache a linear_probe run fitted on (the
    same split, the same C grid, the same choice on validation)."""
    from tests.helpers import TINY, train_inprocess

    probe = ["strategy=linear_probe", f"paths.cache_dir={tmp_path / 'cache'}", "strategy.probe_grid=[0.01,1,100]"]
    _, run = train_inprocess(TINY + probe, tmp_path / "run")
    data = [a for a in TINY if not a.startswith(("logger=", "callbacks.", "trainer."))]
    assert main(["--features", "--out", str(tmp_path / "sk"), "--seeds", "0"] + data + probe) == 0
    (path,) = (tmp_path / "sk").glob("*/summary.json")
    sk = json.loads(path.read_text())
    assert sk["strategy"] == "sklearn_logreg" and sk["backbone"] == run["backbone"] == "resnet18"
    assert sk["split"]["fingerprint"] == run["split"]["fingerprint"]
    assert sk["chosen_C"] == run["strategy_info"]["C"]
    assert sk["val"]["val/acc"] == pytest.approx(run["strategy_info"]["val_acc"], abs=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--budgets", "5,x"], "expected comma-separated integers"),
])
def test_pixel_baseline_bad_arguments_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path)] + args)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_pixel_baseline_config_error_is_one_line(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "data=nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and "data" in err


def test_pixel_baseline_refuses_images_of_different_sizes(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "images"
    for cls, sizes in (("a", (8, 8, 8, 9)), ("b", (8, 8, 8, 8))):
        (root / cls).mkdir(parents=True)
        for k, size in enumerate(sizes):
            Image.new("RGB", (size, size), (40 * k, 100 * (cls == "b"), 0)).save(root / cls / f"{k}.png")  # all distinct
    args = ["--out", str(tmp_path / "out"), "data=image_folder", f"data.root={root}", "data.val_fraction=0.25",
            "data.test_fraction=0.25"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the pixel baseline needs images of one size") and len(err.strip().splitlines()) == 1


def test_text_data_gets_the_tfidf_baseline_on_a_training_runs_splits(tmp_path):
    overrides = ["data=synthetic_text", "data.per_class=30"]
    assert main(["--out", str(tmp_path), "--budgets", "10", "--seeds", "2"] + overrides) == 0
    summary = json.loads((tmp_path / "spc10_s2" / "summary.json").read_text())
    from tl_lightning.backbones.registry import build_backbone

    cfg = compose_config(overrides + ["seed=2", "data.samples_per_class=10"], output_dir=str(tmp_path))
    dm = build_datamodule(cfg.data, build_backbone(cfg.backbone, pretrained=False).preprocessing)
    dm.setup("fit")
    assert summary["split"]["fingerprint"] == dm.split_info["fingerprint"]
    assert summary["backbone"] == "tfidf" and summary["strategy"] == "tfidf_logreg"
    assert summary["test"]["test/acc"] > 0.5  # topic words: well above chance (25 %)
