"""End-to-end runs of the transfer strategies: every strategy on two backbones, source -> target
chaining with forgetting, resume after a kill, DDP weight sync after every unfreeze, bad inputs."""

import json

import pytest
import torch

from tests.conftest import TINY, run_multirun, run_train
from tests.test_cli import assert_user_error

pytestmark = pytest.mark.e2e
STRATEGIES = "finetune,linear_probe,progressive,lp_ft,l2sp,ewc"
SHORT = ["data.image_size=32", "data.batch_size=8", "trainer.max_epochs=4", "logger=csv",
         "callbacks.rich_progress_bar.enabled=false"]


def _sweep_summaries(sweep):
    return {json.loads(p.read_text())["strategy"]: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}


@pytest.mark.parametrize("backbone", [
    ["backbone=efficientnet_lite0", "data=fashion_mnist", "data.samples_per_class=2", "data.eval_per_class=2"],
    ["backbone=timm", "backbone.name=mobilenetv3_small_050", "backbone.pretrained=false", "data=synthetic",
     "data.per_class=8"],
], ids=["embedded_lite0", "timm"])
def test_every_strategy_runs_from_the_command_line(tmp_path, backbone):
    proc = run_multirun([f"strategy={STRATEGIES}", *backbone, *SHORT, "data.augment=none",
                         f"paths.cache_dir={tmp_path}/cache"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summaries = _sweep_summaries(tmp_path)
    assert set(summaries) == set(STRATEGIES.split(",")), sorted(p.name for p in tmp_path.iterdir())
    for name, summary in summaries.items():
        assert 0.0 <= summary["test"]["test/acc"] <= 1.0 and summary["global_step"] > 0, name
    assert summaries["progressive"]["strategy_info"]["phase"] == 3  # one more top group every epoch
    assert summaries["lp_ft"]["strategy_info"]["phase"] == 1  # 3 probe epochs, then fine-tuning
    assert summaries["ewc"]["strategy_info"]["fisher_from"] == "target"
    assert summaries["linear_probe"]["feature_cache"] == "miss"  # features computed once, then the head trains


def test_source_to_target_chaining_reports_forgetting(tmp_path):
    src = tmp_path / "source"
    proc = run_train(TINY + ["strategy=finetune", "data.classes=[0,1]"], src)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for strategy in ("ewc", "linear_probe"):
        run = tmp_path / strategy
        proc = run_train(TINY + [f"strategy={strategy}", "backbone=checkpoint", f"backbone.path={src}/checkpoints/best.ckpt",
                                 "data.classes=[2,3]", "data.augment=basic"], run)
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads((run / "summary.json").read_text())
        source = summary["source"]
        assert source["classes"] == ["class0", "class1"] and summary["class_names"] == ["class2", "class3"]
        assert source["forgetting"] == pytest.approx(source["acc_before"] - source["acc_after"])
        assert summary["backbone_kind"] == "checkpoint" and summary["backbone"] == "resnet18"
        metrics = (run / "csv" / "metrics.csv").read_text()
        assert "source/forgetting" in metrics
    # a linear probe leaves the backbone alone, BatchNorm statistics included: no forgetting at all
    assert json.loads((tmp_path / "linear_probe" / "summary.json").read_text())["source"]["forgetting"] == 0.0
    before = torch.load(src / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    after = torch.load(tmp_path / "linear_probe" / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=True)["state_dict"]
    backbone_keys = [k for k in before if k.startswith("backbone.")]
    assert backbone_keys and all(torch.equal(before[k], after[k]) for k in backbone_keys)
    assert json.loads((tmp_path / "ewc" / "summary.json").read_text())["strategy_info"]["fisher_from"] == "source"
    # the chain goes on: a checkpoint made from a checkpoint backbone records the real architecture
    proc = run_train(TINY + ["strategy=ewc", "backbone=checkpoint", f"backbone.path={tmp_path}/ewc/checkpoints/best.ckpt",
                             "data.classes=[0,3]"], tmp_path / "third")
    assert proc.returncode == 0, proc.stderr[-3000:]
    third = json.loads((tmp_path / "third" / "summary.json").read_text())
    assert third["strategy_info"]["fisher_from"] == "source+online"


def _digests(path):
    return {p.name: p.read_text().splitlines() for p in sorted(path.glob("rank*.sha256"))}


@pytest.mark.parametrize("strategy", ["progressive", "ewc"])
def test_killed_run_resumes_from_last_ckpt_and_ends_like_an_uninterrupted_one(tmp_path, strategy):
    args = TINY + [f"strategy={strategy}", "trainer.max_epochs=3", "trainer.deterministic=true", "data.augment=basic",
                   "backbone.head_dropout=0.3", "callbacks.early_stopping.enabled=false"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    probe = "+callbacks.extra.digest={{_target_: tests.ddp_probe.WeightDigest, path: {}}}"
    proc = run_train(args + [probe.format(full / "dg")], full)
    assert proc.returncode == 0, proc.stderr[-3000:]
    killed = run_train(args + ["+callbacks.extra.kill={_target_: tests.ddp_probe.KillAtEpochStart, epoch: 2}"], cut)
    assert killed.returncode == -9 and not (cut / "summary.json").exists()
    saved = torch.load(cut / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["epoch"] == 1
    resumed = run_train(args + ["resume=auto", probe.format(cut / "dg")], cut)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resume=auto: resuming from" in resumed.stdout + resumed.stderr
    a, b = (json.loads((d / "summary.json").read_text()) for d in (full, cut))
    assert b["resumed_from"].endswith("last.ckpt") and a["global_step"] == b["global_step"] == 12
    assert a["test"] == b["test"] and a["val"] == b["val"] and a["strategy_info"] == b["strategy_info"]
    full_lines, cut_lines = _digests(full / "dg")["rank0.sha256"], _digests(cut / "dg")["rank0.sha256"]
    assert cut_lines[0].startswith("epoch=2") and cut_lines == full_lines[2:]  # epoch 2 and the end
    if strategy == "ewc":
        first, again = proc.stdout + proc.stderr, resumed.stdout + resumed.stderr
        assert "EWC Fisher from" in first and "EWC Fisher from" not in again  # restored, not recomputed


@pytest.mark.integration
@pytest.mark.xdist_group("ddp")
@pytest.mark.parametrize("strategy", ["progressive", "ewc"])
def test_ddp_ranks_stay_identical_after_every_unfreeze(tmp_path, strategy):
    run = tmp_path / "run"
    args = TINY + [f"strategy={strategy}", "trainer=ddp_cpu", "trainer.max_epochs=3", "data.per_class=16",
                   f"+callbacks.extra.digest={{_target_: tests.ddp_probe.WeightDigest, path: {tmp_path / 'dg'}}}"]
    proc = run_train(args, run)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = _digests(tmp_path / "dg")
    assert list(ranks) == ["rank0.sha256", "rank1.sha256"]
    assert ranks["rank0.sha256"] == ranks["rank1.sha256"], ranks
    lines = ranks["rank0.sha256"]
    assert "world=2" in lines[-1] and len(lines) == 4
    if strategy == "progressive":  # phases 0, 1, 2: the trainable set grows and stays in sync
        assert [line.split()[1] for line in lines[:3]] == ["phase=0", "phase=1", "phase=2"]
    else:  # the penalty (a per-rank value) is the same on both ranks and not zero after training
        assert all("penalty=None" not in line for line in lines[:3])
    assert json.loads((run / "summary.json").read_text())["strategy"] == strategy


@pytest.mark.parametrize("args,fragments", [
    (["strategy=progressive", "scheduler.name=onecycle"], ["use scheduler.name=cosine or none"]),
    (["strategy=progressive", "strategy.schedule=weekly"], ["strategy.schedule", "epochs, plateau, phases"]),
    (["strategy=progressive", "strategy.schedule=phases"], ["strategy.schedule=phases needs strategy.phases"]),
    (["strategy=progressive", "strategy.phases=[{group: [layer4]}]"], ["strategy.phases[0]", "expected a mapping"]),
    (["strategy=lp_ft", "strategy.lp_epochs=null"], ["needs strategy.lp_epochs or strategy.lp_patience"]),
    (["strategy=ewc", "strategy.fisher_source=source"], ["fisher_source=source needs backbone=checkpoint"]),
    (["strategy=ewc", "strategy.fisher_source=prior"], ["strategy.fisher_source", "auto, source, target, uniform"]),
    (["strategy=finetune", "strategy.layer_decay=1.5"], ["strategy.layer_decay", "(0, 1]"]),
    (["strategy=finetune", "strategy.alpha=0.1"], ["strategy.alpha"]),
    (["backbone=checkpoint"], ["backbone.path"]),
    (["backbone=checkpoint", "backbone.path=/nonexistent/best.ckpt"], ["backbone.path: no such file", "/nonexistent"]),
    (["resume=/nonexistent/last.ckpt"], ["resume: no such checkpoint file", "resume=auto"]),
])
def test_bad_strategy_inputs_get_one_line_and_exit_2(tmp_path, args, fragments):
    assert_user_error(run_train(TINY + args, tmp_path), *fragments)


def test_checkpoint_backbone_rejects_foreign_and_truncated_files(tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    assert_user_error(run_train(TINY + ["backbone=checkpoint", f"backbone.path={foreign}"], tmp_path / "a"),
                      "not a checkpoint written by tl-lightning")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(foreign.read_bytes()[:40])
    assert_user_error(run_train(TINY + ["backbone=checkpoint", f"backbone.path={truncated}"], tmp_path / "b"),
                      "cannot read", "truncated.ckpt")
    assert_user_error(run_train(TINY + ["strategy=scratch", "backbone=checkpoint", f"backbone.path={foreign}"],
                                tmp_path / "c"), "strategy=scratch starts from random weights")
