"""After training: eval, predict and export of a checkpoint (issue: from checkpoint to use)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.helpers import ROOT, TEST_ENV, tiny, train_inprocess
from tl_lightning.errors import ConfigError, DataError, VerificationError, WeightsError


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A tiny finished image run (random-init resnet18, synthetic 4-class data, 32 px)."""
    run_dir = tmp_path_factory.mktemp("deploy") / "run"
    metrics, summary = train_inprocess(tiny(), run_dir)
    return run_dir, summary


def tool_config(name, overrides, output_dir):
    """The eval/predict/export config for these overrides, checked as the command checks it."""
    from tl_lightning.cli.common import tool_check
    from tl_lightning.compose import compose_config

    return tool_check(name)(compose_config(overrides, str(output_dir), config_name=name))


def run_module(module, args, cwd=ROOT):
    env = {**os.environ, **TEST_ENV}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


# ---------------------------------------------------------------- eval

def test_eval_rebuilds_the_runs_test_split_and_scores_it_again(image_run, tmp_path):
    from tl_lightning.deploy.evaluate import evaluate

    run_dir, summary = image_run
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    cfg = tool_config("eval", [f"ckpt_path={ckpt}", "logger=csv", "progress_bar=false"], tmp_path)
    result = evaluate(cfg, str(tmp_path))
    assert result["split"] == "test"
    assert result["split_info"]["fingerprint"] == summary["split"]["fingerprint"]  # the same samples
    assert result["test"]["test/acc"] == pytest.approx(summary["test"]["test/acc"], abs=1e-6)
    assert result["test_per_class"] == pytest.approx(summary["test_per_class"], abs=1e-6)
    written = json.loads((tmp_path / "summary_eval.json").read_text())
    assert written["test"] == result["test"]
    assert (tmp_path / "confusion_test.png").stat().st_size > 0
    assert "test/acc" in (tmp_path / "csv" / "metrics.csv").read_text()


def test_eval_on_other_data_matches_classes_by_name(image_run, tmp_path):
    from tl_lightning.deploy.evaluate import evaluate

    ckpt = image_run[0] / "checkpoints" / "best.ckpt"
    # a subset of the checkpoint's classes, in another order, every sample (split=auto: all)
    cfg = tool_config("eval", [f"ckpt_path={ckpt}", "logger=csv", "progress_bar=false", "data=synthetic",
                               "data.per_class=5", "data.image_size=32", "data.classes=[class2,class0]"], tmp_path)
    result = evaluate(cfg, str(tmp_path), data_choice="synthetic")
    assert result["split"] == "all" and result["samples"] == 10
    assert result["classes_in_data"] == ["class2", "class0"]
    assert set(result["test_per_class"]) == {"class0", "class2"}  # the absent classes are not scored
    cfg = tool_config("eval", [f"ckpt_path={ckpt}", "logger=csv", "data=synthetic", "data.num_classes=6",
                               "data.per_class=5"], tmp_path)
    with pytest.raises(DataError, match="classes the checkpoint does not know: class4, class5; the checkpoint's "
                                        "classes: class0, class1, class2, class3"):
        evaluate(cfg, str(tmp_path), data_choice="synthetic")


def test_eval_overrides_recorded_data_and_prints_its_table(image_run, tmp_path, capsys):
    """`data.<key>=v` without `data=` becomes Hydra's `+data.<key>=v` (eval's main rewrites the command line)."""
    from tl_lightning.cli.eval import recorded_data_overrides
    from tl_lightning.deploy.evaluate import evaluate
    from tl_lightning.endofrun import print_eval_table

    ckpt = image_run[0] / "checkpoints" / "best.ckpt"
    argv = recorded_data_overrides([f"ckpt_path={ckpt}", "data.eval_batch_size=3", "split=val"])
    assert argv[1] == "+data.eval_batch_size=3" and recorded_data_overrides(["data=synthetic", "data.x=1"])[1] == "data.x=1"
    result = evaluate(tool_config("eval", [*argv, "logger=csv", "progress_bar=false"], tmp_path), str(tmp_path))
    assert result["split"] == "val" and result["samples"] == image_run[1]["split"]["sizes"]["val"]
    print_eval_table(result, str(tmp_path))
    out = capsys.readouterr().out
    assert "accuracy" in out and "summary_eval.json" in out


# ---------------------------------------------------------------- predict

@pytest.fixture
def test_images(image_run, tmp_path):
    """The run's test images saved losslessly (PNG) and as JPEG, plus a file that is not an image."""
    from PIL import Image

    from tl_lightning.config.validate import validate_data
    from tl_lightning.data import build_datamodule
    from tl_lightning.inference import load

    model = load(str(image_run[0] / "checkpoints" / "best.ckpt"))
    datamodule = build_datamodule(validate_data(model.config["data"]), model.preprocessing)
    datamodule.setup("fit")
    test = datamodule.datasets["test"]
    folder = tmp_path / "new"
    (folder / "more").mkdir(parents=True)
    names = []
    for k in range(len(test)):
        raw = test.source.sample(int(test.indices[k]))
        name = folder / f"img{k:02d}.png"
        Image.fromarray(np.asarray(raw)).save(name)
        names.append(name)
        Image.fromarray(np.asarray(raw)).save(folder / "more" / f"img{k:02d}.jpg", quality=95)
    (folder / "broken.png").write_bytes(b"not an image")
    return model, test, folder, names


def test_predict_a_folder_lists_every_input_and_matches_the_model(test_images, tmp_path):
    import csv

    from tl_lightning.deploy.predict import predict

    model, test, folder, names = test_images
    out = tmp_path / "preds.csv"
    result = predict(model, str(folder), str(out), top_k=3, batch_size=4, progress=False)
    rows = {r["input"]: r for r in csv.DictReader(out.open())}
    assert result["inputs"] == len(rows) == 2 * len(test) + 1 and result["unreadable"] == 1
    assert rows[str(folder / "broken.png")]["error"].startswith("UnidentifiedImageError")
    with torch.no_grad():  # the PNGs hold the test images exactly: predict's preprocessing is the datamodule's
        expected = model(torch.stack([test[k]["inputs"] for k in range(len(test))])).softmax(-1)
    for k, name in enumerate(names):
        row = rows[str(name)]
        assert row["predicted"] == model.class_names[int(expected[k].argmax())] == row["top1_label"]
        assert float(row["probability"]) == pytest.approx(float(expected[k].max()), abs=1e-5)
        assert float(row["top1_prob"]) >= float(row["top2_prob"]) >= float(row["top3_prob"])
        assert row["error"] == ""


def test_predict_with_flip_tta_averages_the_image_and_its_mirror(test_images, tmp_path):
    """tta=flip: each image's probabilities are the mean of the plain model's on the image and on its mirror (the
    mirrored files are written and predicted without TTA), and tta=crops scores 10 views."""
    import csv

    from PIL import Image

    from tl_lightning.deploy.predict import predict
    from tl_lightning.deploy.tta import ViewAveraged, with_tta

    model, test, folder, names = test_images
    mirrored = tmp_path / "mirrored"
    mirrored.mkdir()
    for name in names:
        Image.open(name).transpose(Image.FLIP_LEFT_RIGHT).save(mirrored / name.name)

    def probabilities(spec, out, tta):
        predict(model, str(spec), str(out), top_k=len(model.class_names), batch_size=4, progress=False, tta=tta)
        return {os.path.basename(r["input"]): {r[f"top{i}_label"]: float(r[f"top{i}_prob"])
                                               for i in range(1, len(model.class_names) + 1)}
                for r in csv.DictReader(out.open()) if not r["error"]}

    plain = probabilities(folder / "*.png", tmp_path / "plain.csv", "none")
    mirror = probabilities(mirrored, tmp_path / "mirror.csv", "none")
    tta = probabilities(folder / "*.png", tmp_path / "tta.csv", "flip")
    assert sorted(tta) == sorted(name.name for name in names)
    for name, probs in tta.items():
        for label, p in probs.items():
            assert p == pytest.approx((plain[name][label] + mirror[name][label]) / 2, abs=1e-4)
    assert any(abs(plain[n][c] - tta[n][c]) > 1e-3 for n in tta for c in tta[n])  # the mirror changed something
    crops = with_tta(model, "crops", "image")
    assert isinstance(crops, ViewAveraged) and len(crops.views) == 10
    batch = torch.stack([test[k]["inputs"] for k in range(2)])
    with torch.no_grad():
        assert torch.allclose(crops(batch).exp().sum(-1), torch.ones(2), atol=1e-5)  # log of a mean probability
    assert with_tta(model, "none", "image") is model
    with pytest.raises(ConfigError, match="tta=flip averages flipped and cropped views of images; .* takes text"):
        with_tta(model, "flip", "text")


def test_eval_with_tta_records_it_and_scores_the_views(image_run, tmp_path):
    from tl_lightning.deploy.evaluate import evaluate

    ckpt = image_run[0] / "checkpoints" / "best.ckpt"
    result = evaluate(tool_config("eval", [f"ckpt_path={ckpt}", "logger=csv", "progress_bar=false", "tta=flip"],
                                  tmp_path), str(tmp_path))
    assert result["tta"] == "flip" and result["split"] == "test"
    assert 0.0 <= result["test"]["test/acc"] <= 1.0
    assert result["test"]["test/loss"] != pytest.approx(image_run[1]["test"]["test/loss"], abs=1e-6)


def test_predict_bad_inputs(test_images, tmp_path):
    from tl_lightning.deploy.predict import predict

    model, _, folder, _ = test_images
    out = tmp_path / "preds.csv"
    with pytest.raises(DataError, match="none of the 1 input"):
        predict(model, str(folder / "broken.png"), str(out), progress=False)
    with pytest.raises(ConfigError, match="no such file or folder"):
        predict(model, str(tmp_path / "missing"), str(out), progress=False)
    with pytest.raises(DataError, match="matches no file"):
        predict(model, str(folder / "*.gif"), str(out), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no image files"):
        predict(model, str(tmp_path / "empty"), str(out), progress=False)
    assert not out.exists()  # nothing written when nothing could be predicted


def test_predict_command_on_a_glob_writes_only_its_csv(test_images, tmp_path):
    model, test, folder, _ = test_images
    work = tmp_path / "work"
    work.mkdir()
    proc = run_module("tl_lightning.predict", [f"ckpt_path={model.path}", f"input={folder}/more/*.jpg",
                                               "output=glob.csv", "top_k=2", "progress_bar=false"], cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = (work / "glob.csv").read_text().splitlines()
    assert lines[0] == "input,predicted,probability,top1_label,top1_prob,top2_label,top2_prob,error"
    assert len(lines) == 1 + len(test)
    assert os.listdir(work) == ["glob.csv"]  # no run dir, .hydra/ or log file: only what was asked for


# ---------------------------------------------------------------- export

def export_cfg(ckpt, tmp_path, *extra):
    return tool_config("export", [f"ckpt_path={ckpt}", f"output={tmp_path / 'model.onnx'}", "verify_samples=12",
                                  *extra], tmp_path)


def test_onnx_export_has_metadata_and_parity(image_run, tmp_path):
    import onnx

    from tl_lightning.deploy.export import export
    from tl_lightning.inference import load

    ckpt = image_run[0] / "checkpoints" / "best.ckpt"
    report = export(load(str(ckpt)), export_cfg(ckpt, tmp_path, "quantize=dynamic"))
    assert report["passed"] and report["verified_on"].endswith("test split of data=synthetic")
    assert set(report["parity"]) == {"1", "8"}
    assert all(r["max_abs_diff"] < 1e-4 and r["top1_agreement"] == 1.0 for r in report["parity"].values())
    proto = onnx.load(str(tmp_path / "model.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["tl_lightning.class_names"]) == ["class0", "class1", "class2", "class3"]
    assert meta["tl_lightning.input_size"] == "32" and meta["tl_lightning.channels"] == "3"
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch axis
    assert os.path.getsize(report["int8"]["path"]) < report["bytes"] / 2
    assert json.loads((tmp_path / "export.json").read_text())["passed"] is True


def test_a_perturbed_onnx_file_fails_the_parity_check(image_run, tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper

    from tl_lightning.deploy import export as export_module
    from tl_lightning.inference import load

    real_add_metadata = export_module.add_metadata

    def add_metadata_and_perturb(path, meta):
        real_add_metadata(path, meta)
        proto = onnx.load(path)
        bias = next(t for t in proto.graph.initializer if numpy_helper.to_array(t).shape == (4,))  # the head's bias
        bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(1e-3), bias.name))
        onnx.save(proto, path)

    monkeypatch.setattr(export_module, "add_metadata", add_metadata_and_perturb)
    ckpt = image_run[0] / "checkpoints" / "best.ckpt"
    with pytest.raises(VerificationError, match=r"does not match PyTorch \(max \|logit diff\| 1\.00e-03"):
        export_module.export(load(str(ckpt)), export_cfg(ckpt, tmp_path))
    assert not (tmp_path / "model.onnx").exists() and (tmp_path / "model.onnx.unverified").exists()
    assert json.loads((tmp_path / "export.unverified.json").read_text())["passed"] is False
    assert not (tmp_path / "export.json").exists()  # export.json describes a verified model only
    assert VerificationError.exit_code == 1


def test_torchscript_export_and_an_untraceable_model(image_run, tmp_path, monkeypatch):
    from tl_lightning.deploy import export as export_module
    from tl_lightning.inference import load

    ckpt = image_run[0] / "checkpoints" / "best.ckpt"
    model = load(str(ckpt))
    cfg = export_cfg(ckpt, tmp_path, "format=torchscript", f"output={tmp_path / 'model.pt'}")
    report = export_module.export(model, cfg)
    assert report["passed"] and report["parity"]["1"]["max_abs_diff"] < 1e-5
    extra = {"tl_lightning.json": ""}
    torch.jit.load(str(tmp_path / "model.pt"), _extra_files=extra)
    assert json.loads(extra["tl_lightning.json"])["tl_lightning.modality"] == "image"

    def refuse(*args, **kwargs):
        raise RuntimeError("Failed to export: no decomposition for aten::_fancy_op.default in this graph")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    with pytest.raises(ConfigError, match="cannot be exported: unsupported operator aten::_fancy_op.default"):
        export_module.export(model, export_cfg(ckpt, tmp_path))
    assert not (tmp_path / "model.onnx").exists()


# ---------------------------------------------------------------- bad checkpoints, bad options

def test_bad_checkpoints_are_one_line(image_run, tmp_path):
    from tl_lightning.inference import from_checkpoint, load, read_checkpoint

    plain = tmp_path / "plain.ckpt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(WeightsError, match="not a checkpoint written by tl-lightning"):
        load(str(plain))
    good = image_run[0] / "checkpoints" / "best.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="not a readable checkpoint"):
        load(str(truncated))
    ckpt = read_checkpoint(str(good))
    ckpt["tl_lightning"]["architecture"] = {"kind": "torchvision", "name": "resnet50"}
    with pytest.raises(WeightsError, match="does not fit its recorded architecture torchvision/resnet50"):
        from_checkpoint(ckpt, str(good))


@pytest.mark.parametrize("name,args,message", [
    ("eval", [], "config key 'ckpt_path' has no value"),
    ("eval", ["ckpt_path={good}", "split=dev"], "config key 'split': 'dev' is not valid"),
    ("eval", ["ckpt_path={good}", "tta=mirror"], "config key 'tta': 'mirror' is not valid; valid: none, flip, crops"),
    ("predict", ["ckpt_path={good}", "input={tmp}", "tta=ten"], "config key 'tta': 'ten' is not valid"),
    ("predict", ["ckpt_path={good}", "input={tmp}/nothing"], "input: no such file or folder"),
    ("predict", ["ckpt_path={good}", "input={tmp}", "top_k=0"], "config key 'top_k': must be a positive number"),
    ("export", ["ckpt_path={good}", "format=tflite"], "config key 'format': 'tflite' is not valid"),
    ("export", ["ckpt_path={good}", "format=torchscript", "quantize=dynamic"], "is for format=onnx"),
    ("export", ["ckpt_path={good}", "verify_batch_sizes=[0]"], "a list of batch sizes >= 1"),
])
def test_config_mistakes_are_one_line(image_run, tmp_path, name, args, message):
    good = image_run[0] / "checkpoints" / "best.ckpt"
    with pytest.raises(ConfigError) as info:
        tool_config(name, [a.format(good=good, tmp=tmp_path) for a in args], tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("module,args,message", [
    ("tl_lightning.eval", ["ckpt_path={plain}"], "is not a checkpoint written by tl-lightning"),
    ("tl_lightning.predict", ["ckpt_path={good}", "input={tmp}/nothing"], "input: no such file or folder"),
    ("tl_lightning.export", ["ckpt_path={truncated}"], "is not a readable checkpoint"),
])
def test_entry_points_refuse_bad_input_in_one_line(image_run, tmp_path, module, args, message):
    """The commands' contract: one error line, exit 2, nothing written into the run (and, for a mistake the check
    before writing catches, no run dir of the command's own)."""
    plain = tmp_path / "plain.ckpt"
    torch.save({"weight": torch.zeros(2)}, plain)
    good = image_run[0] / "checkpoints" / "best.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:5000])
    args_in = " ".join(args)
    args = [a.format(plain=plain, good=good, truncated=truncated, tmp=tmp_path) for a in args]
    before = sorted(os.listdir(image_run[0]))
    proc = run_module(module, [*args, f"hydra.run.dir={tmp_path / 'out'}"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
    assert sorted(os.listdir(image_run[0])) == before  # nothing written into the run
    if "{plain}" not in args_in:  # refused before Hydra writes anything (the plain file is refused once read)
        assert not (tmp_path / "out").exists()


def test_in_chans_is_for_image_backbones_in_range(compose):
    from tl_lightning.config.validate import validate_config

    with pytest.raises(ConfigError, match="backbone.in_chans': only for image backbones"):
        validate_config(compose(["data=fortunes", "backbone.in_chans=1"]))
    with pytest.raises(ConfigError, match="between 1 and 64"):
        validate_config(compose(["backbone.in_chans=0"]))


def test_class_folders_match_class_names_that_a_folder_cannot_hold():
    from tl_lightning.deploy.evaluate import class_mapping

    assert class_mapping(["T-shirt-top", "Bag"], ["T-shirt/top", "Bag", "Coat"], "image_folder") == [0, 1]
    with pytest.raises(DataError, match="does not know: T-shirt"):
        class_mapping(["T-shirt", "Bag"], ["T-shirt/top", "Bag"], "image_folder")
