"""scripts/report.py: tables over seeds, negative transfer against scratch, --by config keys, the tradeoff plot."""

import json

import pytest

from tl_lightning.cli.report import main


def write(tmp_path, job, strategy, budget, seed, acc):
    d = tmp_path / str(job)
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({
        "backbone": "b", "dataset": "d", "strategy": strategy, "samples_per_class": budget, "seed": seed,
        "test": {"test/acc": acc}, "val": {"val/acc": acc}}))


def test_report_table_and_plot(tmp_path):
    job = 0
    for strategy, base in (("scratch", 0.5), ("finetune", 0.8)):
        for budget in (10, 100):
            for seed, delta in enumerate((-0.02, 0.0, 0.02)):
                write(tmp_path, job, strategy, budget, seed, base + delta + budget / 1000)
                job += 1
    assert main([str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "| b | d | finetune | 10 | 81.0 ± 2.0 | +30.0 | best | 3 |" in text
    assert "| b | d | scratch | 100 | 60.0 ± 2.0 | - | -30.0 | 3 |" in text
    assert "same budget beyond noise: the paired differences' 95 % bootstrap interval below 0): none." in text
    assert (tmp_path / "report.png").stat().st_size > 1000


def test_report_marks_negative_transfer_against_scratch_on_the_same_budget(tmp_path):
    cells = {("scratch", 5): (0.50, 0.52, 0.54), ("finetune", 5): (0.40, 0.41, 0.42),  # 11 below, std 1
             ("linear_probe", 5): (0.45, 0.50, 0.55),  # 2 below scratch: within its std of 5 points
             ("scratch", 50): (0.70, 0.70, 0.70), ("finetune", 50): (0.80, 0.82, 0.84)}
    job = 0
    for (strategy, budget), accs in cells.items():
        for seed, acc in enumerate(accs):
            write(tmp_path, job, strategy, budget, seed, acc)
            job += 1
    assert main([str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "| b | d | finetune | 5 | 41.0 ± 1.0 | -11.0 **negative transfer** | -11.0 | 3 |" in text
    # 2 below scratch, but seed 2 is above it (-5, -2, +1): within noise, no negative transfer
    assert "| b | d | linear_probe | 5 | 50.0 ± 5.0 | -2.0 | -2.0 (within noise) | 3 |" in text
    assert "| b | d | finetune | 50 | 82.0 ± 2.0 | +12.0 | best | 3 |" in text
    assert "- finetune with b on d at 5 labels/class: 41.0 ± 1.0 % against scratch's 52.0 % (-11.0 points)" in text
    assert text.count("**negative transfer**") == 1


def test_report_on_empty_dir_is_a_user_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().err


def test_report_groups_a_hyperparameter_sweep_by_config_keys(tmp_path):
    for job, (lr, seed, score) in enumerate(((1e-3, 0, 0.70), (1e-3, 1, 0.72), (1e-2, 0, 0.60), (1e-2, 1, 0.64))):
        write(tmp_path, job, "finetune", 20, seed, score)
        (tmp_path / str(job) / "config_resolved.yaml").write_text(f"strategy:\n  lr: {lr}\n  bn: train\n")
    assert main([str(tmp_path), "--metric", "val/acc", "--by", "strategy.lr", "--by", "strategy.bn"]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "| b | d | finetune | 20 | 0.001 | train | 71.0 ± 1.4 | 2 |" in text
    assert "| b | d | finetune | 20 | 0.01 | train | 62.0 ± 2.8 | 2 |" in text


def test_report_skips_an_unreadable_summary_with_a_warning_naming_it(tmp_path, capsys):
    for seed in range(2):
        write(tmp_path, seed, "finetune", 20, seed, 0.7 + seed / 100)
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "summary.json").write_text('{"backbone": "b", "dataset"')  # truncated by a crash
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "summary.json").write_text('[1, 2]')  # valid JSON, not a summary
    assert main([str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"warning: skipping {tmp_path / '2' / 'summary.json'}" in err
    assert f"warning: skipping {tmp_path / '3' / 'summary.json'}: not a run summary" in err
    assert "| b | d | finetune | 20 | 70.5 ± 0.7 | 2 |" in (tmp_path / "report.md").read_text()


def test_report_reads_long_tail_accuracies(tmp_path):
    for job, (loss, seed, tail) in enumerate((("ce", 0, 0.10), ("ce", 1, 0.20), ("focal", 0, 0.40), ("focal", 1, 0.50))):
        write(tmp_path, job, "finetune", 100, seed, 0.7)
        summary = json.loads((tmp_path / str(job) / "summary.json").read_text())
        summary["long_tail"] = {"test_tail_acc": tail}
        (tmp_path / str(job) / "summary.json").write_text(json.dumps(summary))
        (tmp_path / str(job) / "config_resolved.yaml").write_text(f"loss:\n  name: {loss}\n")
    assert main([str(tmp_path), "--metric", "long_tail/test_tail_acc", "--by", "loss.name"]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "| b | d | finetune | 100 | ce | 15.0 ± 7.1 | 2 |" in text and "| focal | 45.0 ± 7.1 | 2 |" in text


def test_rank_vs_accuracy_matches_runs_to_ranked_backbones_and_gives_kendall_tau(tmp_path, capsys):
    import runpy
    import sys
    from pathlib import Path

    ranking = [{"backbone": b, "kind": k, "name": n, "path": p, "pretrained": pre, "logme": score}
               for b, k, n, p, pre, score in (
                   ("lite0", "efficientnet_lite0", "tf_efficientnet_lite0", None, True, 0.10),
                   ("/runs/src/best.ckpt", "checkpoint", "checkpoint", "/runs/src/best.ckpt", True, 0.05),
                   ("random:lite0", "efficientnet_lite0", "tf_efficientnet_lite0", None, False, -0.01),
                   ("random:resnet18", "torchvision", "resnet18", None, False, -0.02))]
    (tmp_path / "diagnose.json").write_text(json.dumps({"dataset": "d", "ranking": ranking}))
    runs = {("efficientnet_lite0", "tf_efficientnet_lite0", True, None): 0.80, ("torchvision", "resnet18", False, None): 0.30,
            ("checkpoint", "checkpoint", True, "/runs/src/best.ckpt"): 0.60,
            ("efficientnet_lite0", "tf_efficientnet_lite0", False, None): 0.35}  # resnet18 < lite0 random: tau 1
    for job, ((kind, name, pretrained, path), acc) in enumerate(runs.items()):
        run = tmp_path / "sweep" / str(job)
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"dataset": "d", "strategy": "linear_probe", "seed": 0,
                                                      "pretrained": pretrained, "test": {"test/acc": acc}}))
        (run / "config_resolved.yaml").write_text(f"backbone:\n  kind: {kind}\n  name: {name}\n  path: {path or 'null'}\n")
    script = Path(__file__).resolve().parents[1] / "scripts" / "rank_vs_accuracy.py"
    argv = sys.argv
    sys.argv = ["rank_vs_accuracy.py", str(tmp_path / "diagnose.json"), str(tmp_path / "sweep")]
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "| lite0 | 0.1000 | 80.0 (1) |" in out and "| random:resnet18 | -0.0200 | 30.0 (1) |" in out
    assert "Kendall tau (LogME vs linear_probe test/acc) over 4 backbones: +1.00" in out


def test_tradeoff_plot_puts_each_strategy_at_its_two_means_and_adds_both_metrics_to_the_table(tmp_path, monkeypatch):
    for job, (strategy, seed, acc, forgetting) in enumerate((("finetune", 0, 0.84, 0.10), ("finetune", 1, 0.86, 0.14),
                                                              ("ewc", 0, 0.83, 0.02), ("ewc", 1, 0.85, 0.04))):
        write(tmp_path, job, strategy, 10, seed, acc)
        summary = json.loads((tmp_path / str(job) / "summary.json").read_text())
        summary["source"] = {"forgetting": forgetting}
        (tmp_path / str(job) / "summary.json").write_text(json.dumps(summary))
    points = {}
    import matplotlib.axes

    real = matplotlib.axes.Axes.errorbar

    def record(self, x, y, *args, label=None, **kwargs):
        if "xerr" in kwargs:  # the tradeoff plot's points (report.png's lines have no xerr)
            points[label] = (x[0], y[0], kwargs["xerr"][0], kwargs["yerr"][0])
        return real(self, x, y, *args, label=label, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", record)
    assert main([str(tmp_path), "--tradeoff", "test/acc,source/forgetting"]) == 0
    assert (tmp_path / "tradeoff.png").stat().st_size > 1000
    assert points["ewc"][:2] == pytest.approx((84.0, 3.0))
    assert points["finetune"] == pytest.approx((85.0, 12.0, 1.414, 2.828), abs=1e-3)
    assert "| b | d | ewc | 10 | 84.0 ± 1.4 | 3.0 ± 1.4 | -1.0 | 2 |" in (tmp_path / "report.md").read_text()


def test_tradeoff_needs_two_metrics(tmp_path, capsys):
    write(tmp_path, 0, "finetune", 10, 0, 0.8)
    assert main([str(tmp_path), "--tradeoff", "test/acc"]) == 2
    assert "--tradeoff takes two metrics X,Y" in capsys.readouterr().err


def test_paired_differences_interval_and_sign_flip_p_by_hand():
    from tl_lightning.cli.paired import beyond_noise, paired

    a = {0: 0.80, 1: 0.78, 2: 0.79, 3: 0.81}
    b = {0: 0.78, 1: 0.77, 2: 0.76, 3: 0.80, 9: 0.5}  # key 9 has no partner: left out
    result = paired(a, b)
    assert result["pairs"] == 4 and result["diff"] == pytest.approx(0.0175)  # (2 + 1 + 3 + 1) / 4 points
    # every difference positive: of the 16 sign patterns only all-plus and all-minus reach |mean| 1.75 points
    assert result["p"] == pytest.approx(2 / 16)
    assert 0.01 <= result["low"] <= result["diff"] <= result["high"] <= 0.03 and beyond_noise(result)
    mixed = paired({0: 0.8, 1: 0.7, 2: 0.75}, {0: 0.7, 1: 0.8, 2: 0.74})  # +10, -10, +1
    assert mixed["low"] < 0 < mixed["high"] and not beyond_noise(mixed) and mixed["p"] == pytest.approx(1.0)
    assert paired({0: 1.0}, {0: 0.0}) is None  # one pair says nothing about noise


def test_report_pairs_runs_by_seed_and_split_and_marks_differences_within_noise(tmp_path):
    job = 0
    for strategy, accs in (("finetune", (0.80, 0.78, 0.79)), ("lp_ft", (0.79, 0.79, 0.77)),
                           ("linear_probe", (0.75, 0.74, 0.76))):
        for seed, acc in enumerate(accs):
            write(tmp_path, job, strategy, 20, seed, acc)
            job += 1
    assert main([str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "| b | d | finetune | 20 | 79.0 ± 1.0 | best | 3 |" in text
    assert "| b | d | lp_ft | 20 | 78.3 ± 1.2 | -0.7 (within noise) | 3 |" in text  # +1, -1, +2: signs disagree
    assert "| b | d | linear_probe | 20 | 75.0 ± 1.0 | -4.0 | 3 |" in text  # +5, +4, +3: beyond noise
    assert "- 20/class: finetune (b) - linear_probe (b): **+4.0 [+3.0, +5.0], p = 0.25, 3 pairs**" in text
    assert "- 20/class: finetune (b) - lp_ft (b): +0.7 [-1.0, +2.0], p = 0.75, 3 pairs" in text
