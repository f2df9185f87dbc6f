"""End-to-end runs of the transfer strategies: every strategy on the embedded backbone, source -> target
chaining with forgetting, resume after a kill, DDP weight sync after every unfreeze, bad checkpoints."""

import csv
import json
import logging

import numpy as np
import pytest
import torch

from tests.helpers import TINY, expect_user_error, run_train, train_inprocess

pytestmark = pytest.mark.e2e
SHORT = ["data.image_size=32", "data.batch_size=8", "trainer.max_epochs=4", "logger=csv",
         "callbacks.rich_progress_bar.enabled=false"]


def test_every_strategy_on_the_embedded_backbone(tmp_path):
    """Real EfficientNet-Lite0 weights, Fashion-MNIST, 2 labels per class: 20 images, 3 steps an epoch."""
    base = ["backbone=efficientnet_lite0", "data=fashion_mnist", "data.samples_per_class=2", "data.eval_per_class=2",
            "data.augment=none", f"paths.cache_dir={tmp_path}/cache", *SHORT]
    summaries = {}
    for strategy in ("finetune", "linear_probe", "progressive", "lp_ft", "l2sp", "ewc"):
        _, summaries[strategy] = train_inprocess(base + [f"strategy={strategy}"], tmp_path / strategy)
    head_params = 1280 * 10 + 10
    for name, summary in summaries.items():
        # the L-BFGS probe solves the head on the cached features; one epoch (3 batches) scores and checkpoints it
        assert summary["epochs_run"] == (1 if name == "linear_probe" else 4), name
        assert summary["global_step"] == (3 if name == "linear_probe" else 4 * 3), name
        trainable = summary["params"]["trainable"]
        # counted when training starts: the staged strategies begin with the head alone (LP-FT's probe is fitted
        # before the first step, so it fine-tunes everything from the start)
        assert trainable == (head_params if name in ("linear_probe", "progressive") else 3_383_818), name
    from omegaconf import OmegaConf

    from tl_lightning.backbones.registry import build_backbone

    groups = build_backbone(OmegaConf.create({"kind": "efficientnet_lite0", "name": "lite0", "weights": None}),
                            pretrained=False).layer_groups
    progressive = summaries["progressive"]["strategy_info"]
    assert progressive["phase"] == 3  # one more top group every epoch
    assert progressive["trainable_units"] == [g.name for g in reversed(groups)][:3]
    lp_ft = summaries["lp_ft"]["strategy_info"]
    assert lp_ft["phase"] == 0 and lp_ft["probe"]["probe"] == "lbfgs"  # the probe's fit, then one fine-tuning phase
    probe = summaries["linear_probe"]["strategy_info"]
    assert probe["probe"] == "lbfgs" and probe["C"] in [row["C"] for row in probe["grid"]]
    assert summaries["ewc"]["strategy_info"]["fisher_from"] == "target"
    assert summaries["linear_probe"]["feature_cache"] == "miss"  # features computed once, then the head trains
    for name in ("ewc", "l2sp"):  # the strategy's penalty is a loss term logged under its name
        rows = [r for r in csv.DictReader((tmp_path / name / "csv" / "metrics.csv").open()) if r.get(f"train/{name}")]
        assert len(rows) == 4 and float(rows[-1][f"train/{name}"]) > 0


def test_source_to_target_chaining_reports_forgetting(tmp_path):
    src = tmp_path / "source"
    train_inprocess(TINY + ["strategy=finetune", "data.classes=[0,1]"], src)
    for strategy in ("ewc", "linear_probe"):
        run = tmp_path / strategy
        augment = ["data.augment=basic"] if strategy == "ewc" else []  # the probe caches (strategy.augment=none)
        _, summary = train_inprocess(TINY + [f"strategy={strategy}", "backbone=checkpoint",
                                             f"backbone.path={src}/checkpoints/best.ckpt", "data.classes=[2,3]",
                                             *augment], run)
        source = summary["source"]
        assert source["classes"] == ["class0", "class1"] and summary["class_names"] == ["class2", "class3"]
        assert source["forgetting"] == pytest.approx(source["acc_before"] - source["acc_after"])
        assert summary["backbone_kind"] == "checkpoint" and summary["backbone"] == "resnet18"
        assert "source/forgetting" in (run / "csv" / "metrics.csv").read_text()
    # the source accuracy before target training is the source run's own test accuracy (same split, same weights)
    source_summary = json.loads((src / "summary.json").read_text())
    assert summary["source"]["acc_before"] == pytest.approx(source_summary["test"]["test/acc"])
    # a linear probe leaves the backbone alone, BatchNorm statistics included: no forgetting at all
    assert json.loads((tmp_path / "linear_probe" / "summary.json").read_text())["source"]["forgetting"] == 0.0
    before = torch.load(src / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    after = torch.load(tmp_path / "linear_probe" / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=True)["state_dict"]
    backbone_keys = [k for k in before if k.startswith("backbone.")]
    assert backbone_keys and all(torch.equal(before[k], after[k]) for k in backbone_keys)
    assert json.loads((tmp_path / "ewc" / "summary.json").read_text())["strategy_info"]["fisher_from"] == "source"
    # the chain goes on: a checkpoint made from a checkpoint backbone records the real architecture
    _, third = train_inprocess(TINY + ["strategy=ewc", "backbone=checkpoint",
                                       f"backbone.path={tmp_path}/ewc/checkpoints/best.ckpt", "data.classes=[0,3]"],
                               tmp_path / "third")
    assert third["strategy_info"]["fisher_from"] == "source+online"
    record = torch.load(tmp_path / "third" / "checkpoints" / "best.ckpt", weights_only=True)["tl_lightning"]
    assert record["architecture"] == {"kind": "torchvision", "name": "resnet18"}


def _digests(path):
    return {p.name: p.read_text().splitlines() for p in sorted(path.glob("rank*.sha256"))}


@pytest.mark.parametrize("strategy", ["progressive", "ewc"])
def test_killed_run_resumes_from_last_ckpt_and_ends_like_an_uninterrupted_one(tmp_path, strategy, caplog):
    """Only the killed run needs a process of its own (SIGKILL); the uninterrupted reference and the resumed
    run train in this process, with the same single thread."""
    bn = ["strategy.bn=freeze_stats"] if strategy == "ewc" else []  # the policy holds across the resume too
    # ewc also averages its weights (EMA): the average, its update count and the training weights resume exactly
    ema = ["callbacks.weight_averaging.enabled=true", "callbacks.weight_averaging.decay=0.9"] if strategy == "ewc" else []
    # progressive also adapts to unlabelled data (DANN): its domain classifier and the unlabelled stream resume too
    dann = ["+data.unlabeled={name: synthetic, per_class: 12}", "adapt=dann"] if strategy == "progressive" else []
    args = TINY + [f"strategy={strategy}", "trainer.max_epochs=3", "trainer.deterministic=true", "data.augment=basic",
                   "backbone.head_dropout=0.3", "callbacks.early_stopping.enabled=false", *bn, *dann, *ema]
    full, cut = tmp_path / "full", tmp_path / "cut"
    probe = "+callbacks.extra.digest={{_target_: tests.ddp_probe.WeightDigest, path: {}}}"
    caplog.set_level(logging.INFO, logger="tl_lightning")
    _, a = train_inprocess(args + [probe.format(full / "dg")], full)
    first = caplog.text
    caplog.clear()
    killed = run_train(args + ["+callbacks.extra.kill={_target_: tests.ddp_probe.KillAtEpochStart, epoch: 2}"], cut)
    assert killed.returncode == -9 and not (cut / "summary.json").exists(), killed.stderr[-3000:]
    saved = torch.load(cut / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["epoch"] == 1
    _, b = train_inprocess(args + ["resume=auto", probe.format(cut / "dg")], cut)
    again = caplog.text
    assert "resume=auto: resuming from" in again
    assert b["resumed_from"].endswith("last.ckpt") and a["global_step"] == b["global_step"] == 12
    assert b["started_at"] == {"epoch": 2, "global_step": 8}
    assert a["test"] == b["test"] and a["val"] == b["val"] and a["strategy_info"] == b["strategy_info"]
    if strategy == "progressive":
        assert a["adaptation"]["target_test"] == b["adaptation"]["target_test"]
        # the gap before training is the first start's (kept in the checkpoint), not the resumed model's
        assert a["adaptation"]["feature_gap"] == b["adaptation"]["feature_gap"]
    full_lines, cut_lines = _digests(full / "dg")["rank0.sha256"], _digests(cut / "dg")["rank0.sha256"]
    assert cut_lines[0].startswith("epoch=2") and cut_lines == full_lines[2:]  # epoch 2 and the end
    if strategy == "ewc":
        assert a["weight_averaging"] == b["weight_averaging"] and a["weight_averaging"]["updates"] == 12
        assert "EWC Fisher from" in first and "EWC Fisher from" not in again  # restored, not recomputed
        # bn=freeze_stats: the random-init running statistics (mean 0, var 1) are still there after the resume
        final = torch.load(cut / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        means = [v for k, v in final.items() if k.endswith("running_mean")]
        assert means and all(torch.equal(v, torch.zeros_like(v)) for v in means)
        assert all(int(v) == 0 for k, v in final.items() if k.endswith("num_batches_tracked"))


@pytest.mark.integration
@pytest.mark.xdist_group("ddp")
@pytest.mark.parametrize("strategy", ["progressive", "ewc"])
def test_ddp_ranks_stay_identical_after_every_unfreeze(tmp_path, strategy):
    """2 gloo processes: identical weights after every epoch; the ranks share the job's dir and only rank 0 logs.
    The EWC run also draws class-balanced batches from a long-tailed budget: each rank takes its own share
    (positions rank, rank + 2, ...) of the one stream BalancedSampler draws for (seed, epoch)."""
    run = tmp_path / "run"
    logger = "logger=wandb" if strategy == "progressive" else "logger=csv"
    bn = "strategy.bn=freeze" if strategy == "ewc" else "strategy.bn=train"
    args = [a for a in TINY if not a.startswith("logger=")] + [
        logger, bn, f"strategy={strategy}", "trainer=ddp_cpu", "trainer.max_epochs=3", "data.per_class=16",
        f"+callbacks.extra.digest={{_target_: tests.ddp_probe.WeightDigest, path: {tmp_path / 'dg'}}}"]
    # EWC also adapts to unlabelled data (DANN): each rank its own share of the unlabelled stream; and it averages
    # its weights (EMA): the digests, taken after the average is swapped in, are the averaged weights of each rank
    sampled = ["data.imbalance.counts=[10,5,3,2]", "data.sampler=balanced", "callbacks.weight_averaging.enabled=true",
               f"+callbacks.extra.seen={{_target_: tests.ddp_probe.SeenBatches, key: index, "
               f"path: '{tmp_path / 'seen' / 'rank{rank}.txt'}'}}",
               "+data.unlabeled={name: synthetic, per_class: 16}", "adapt=dann",
               f"+callbacks.extra.unseen={{_target_: tests.ddp_probe.SeenBatches, key: unlabeled.index, "
               f"path: '{tmp_path / 'seen' / 'unlabeled{rank}.txt'}'}}"]
    if strategy == "ewc":
        args += sampled
    proc = run_train(args, run, env={"WANDB_MODE": ""})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "seen") == ["dg", "run"], "no forked run dirs"
    ranks = _digests(tmp_path / "dg")
    assert list(ranks) == ["rank0.sha256", "rank1.sha256"]
    assert ranks["rank0.sha256"] == ranks["rank1.sha256"], ranks
    lines = ranks["rank0.sha256"]
    assert "world=2" in lines[-1] and len(lines) == 4
    if strategy == "progressive":  # phases 0, 1, 2: the trainable set grows and stays in sync
        assert [line.split()[1] for line in lines[:3]] == ["phase=0", "phase=1", "phase=2"]
    else:  # the penalty (a per-rank value) is the same on both ranks and not zero after training
        assert all("penalty=None" not in line for line in lines[:3])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["strategy"] == strategy and summary["global_step"] == int(lines[-1].split("step=")[1])
    if strategy == "progressive":
        assert len(list((run / "wandb").glob("offline-run-*"))) == 1, "one W&B run, from rank 0"
        output = proc.stdout + proc.stderr  # each line once: Lightning's, the harness's, the end-of-run table
        assert output.count("`Trainer.fit` stopped") == 1 and output.count("summary in ") == 1, output[-3000:]
        assert proc.stdout.count("test accuracy") == 1 and "python -m tl_lightning.export" in proc.stdout
    else:
        assert summary["weight_averaging"]["kind"] == "ema" and summary["weight_averaging"]["updates"] > 0
        _assert_ranks_share_one_balanced_stream(tmp_path / "seen", args)
        # bn=freeze under DDP: BatchNorm affine parameters and statistics keep their initial values
        final = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        norm_weights = [k[: -len("running_var")] + "weight" for k in final if k.endswith("running_var")]
        assert norm_weights and all(torch.equal(final[k], torch.ones_like(final[k])) for k in norm_weights)
        assert all(torch.equal(final[k.replace("weight", "bias")], torch.zeros_like(final[k])) for k in norm_weights)
        assert all(int(v) == 0 for k, v in final.items() if k.endswith("num_batches_tracked"))


def _assert_ranks_share_one_balanced_stream(seen, args):
    from omegaconf import OmegaConf

    from tl_lightning.backbones.preprocessing import ImagePreprocessing, InputSpec
    from tl_lightning.compose import compose_config
    from tl_lightning.data import build_datamodule
    from tl_lightning.data.samplers import BalancedSampler
    from tl_lightning.data.unlabeled import CycledSampler

    cfg = compose_config([a for a in args if not a.startswith("+callbacks")], "/tmp/tl-test-run", validate=False)
    dm = build_datamodule(cfg.data, ImagePreprocessing(InputSpec(size=32, mean=(0.5,) * 3, std=(0.5,) * 3)))
    dm.setup("fit")
    train = dm.datasets["train"]
    assert list(np.bincount(train.targets)) == [10, 5, 3, 2]
    seen_by_rank = [[[int(i) for i in line.split()] for line in (seen / f"rank{r}.txt").read_text().splitlines()]
                    for r in range(2)]
    assert [len(epochs) for epochs in seen_by_rank] == [3, 3]
    for epoch in range(3):
        for rank in range(2):
            sampler = BalancedSampler(train.targets, OmegaConf.select(cfg, "seed"), num_replicas=2, rank=rank)
            sampler.set_epoch(epoch)
            assert seen_by_rank[rank][epoch] == [int(train.indices[k]) for k in sampler], (rank, epoch)
    unlabeled = dm.unlabeled.datamodule.datasets["train"]
    drawn = [[[int(i) for i in line.split()] for line in (seen / f"unlabeled{r}.txt").read_text().splitlines()]
             for r in range(2)]
    per_rank = len(drawn[0][0])
    assert per_rank == 2 * 8, "as many unlabelled batches as labelled ones (10 samples a rank, batches of 8)"
    for epoch in range(3):
        assert not set(drawn[0][epoch]) & set(drawn[1][epoch]) or epoch > 0
        for rank in range(2):
            sampler = CycledSampler(len(unlabeled), per_rank, OmegaConf.select(cfg, "seed"), 2, rank)
            sampler.set_epoch(epoch)
            assert drawn[rank][epoch] == [int(unlabeled.indices[k]) for k in sampler], (rank, epoch)
        assert seen_by_rank[0][epoch] != seen_by_rank[1][epoch]


def test_checkpoint_backbone_rejects_foreign_and_truncated_files(tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    expect_user_error(TINY + ["backbone=checkpoint", f"backbone.path={foreign}"], tmp_path / "a",
                      "not a checkpoint written by tl-lightning")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(foreign.read_bytes()[:40])
    expect_user_error(TINY + ["backbone=checkpoint", f"backbone.path={truncated}"], tmp_path / "b",
                      "backbone.path:", "truncated.ckpt", "not a readable checkpoint")


def test_a_compiled_backbone_follows_progressive_unfreezing(tmp_path):
    """trainer.compile with a strategy that changes the trainable set mid-run (a group unfrozen after epoch 0): dynamo
    recompiles when requires_grad changes, so the compiled run trains as the eager one does, and its checkpoint keys
    are the eager ones. aot_eager traces through dynamo and AOTAutograd and runs eager kernels: the whole compile
    path but inductor's code generation (a minute or more on this CPU; its figures are in docs/speed.md)."""
    args = TINY + ["strategy=progressive", "strategy.unfreeze_every=1", "trainer.max_epochs=2",
                   "trainer.deterministic=true", "callbacks.early_stopping.enabled=false", "scheduler.name=none"]
    _, eager = train_inprocess(args, tmp_path / "eager")
    _, compiled = train_inprocess(args + ["trainer.compile=aot_eager"], tmp_path / "compiled")
    assert compiled["strategy_info"] == eager["strategy_info"]  # the same groups unfrozen at the same epochs
    assert eager["strategy_info"]["phase"] == 1  # head, then a group unfrozen: the trainable set changed
    a, b = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for d in
            (tmp_path / "eager", tmp_path / "compiled"))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a)
    assert compiled["test"]["test/acc"] == pytest.approx(eager["test"]["test/acc"], abs=1e-6)
