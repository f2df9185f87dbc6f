import json

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
    assert "| b | d | finetune | 10 | 81.0 ± 2.0 | 3 |" in text
    assert "| b | d | scratch | 100 | 60.0 ± 2.0 | 3 |" in text
    assert (tmp_path / "report.png").stat().st_size > 1000


def test_report_on_empty_dir_is_a_user_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().err
