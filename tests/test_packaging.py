"""`pip install .` (not editable) gives working entry points: the configs ship inside the package."""

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, TEST_ENV


def test_package_list_covers_the_source_tree():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = [".".join(init.parent.relative_to(ROOT).parts)
             for top in ("tl_lightning", "hydra_plugins") for init in (ROOT / top).rglob("__init__.py")]
    assert sorted(listed) == sorted(found + ["tl_lightning.conf"])


@pytest.mark.integration
def test_installed_wheel_runs_its_console_script_outside_the_checkout(tmp_path):
    wheel_dir, target, elsewhere = tmp_path / "wheel", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(wheel_dir)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(wheel_dir.glob("tl_lightning-*.whl"))
    subprocess.run(pip + ["install", "--no-deps", "--target", str(target), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    env = {**os.environ, **TEST_ENV, "PYTHONPATH": str(target)}  # the installed copy comes before the checkout
    where = subprocess.run([sys.executable, "-c", "import tl_lightning.config as c; print(c.CONFIG_DIR)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert where.stdout.strip() == str(target / "tl_lightning" / "conf"), where.stderr[-2000:]
    proc = subprocess.run([str(target / "bin" / "tl-train"), "--help"], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "strategy: ewc, finetune, ia3, l2sp, linear_probe, lora, lp_ft, progressive, protonet, scratch" in proc.stdout
    assert "hydra/launcher: parallel, slurm" in proc.stdout and "name: fashion_mnist" in proc.stdout
    report = subprocess.run([str(target / "bin" / "tl-report"), str(elsewhere)], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 2 and "no summary.json" in report.stderr, report.stderr[-2000:]
    assert (target / "bin" / "tl-prefetch").is_file() and (target / "bin" / "tl-pixel-baseline").is_file()
    for script, extra in (("tl-eval", []), ("tl-predict", ["input=x"]), ("tl-export", [])):  # their configs ship too
        proc = subprocess.run([str(target / "bin" / script), f"ckpt_path={elsewhere / 'none.ckpt'}", *extra],
                              cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "ckpt_path: no such file" in proc.stderr, (script, proc.stderr[-2000:])
    diagnose = subprocess.run([str(target / "bin" / "tl-diagnose"), "gap", "reference.kind=source"], cwd=elsewhere,
                              env=env, capture_output=True, text=True, timeout=120)
    assert diagnose.returncode == 2 and "reference.kind=source needs backbone=checkpoint" in diagnose.stderr, \
        diagnose.stderr[-2000:]
    refused = subprocess.run([str(target / "bin" / "tl-train"), "strategy.lr=-1"], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "strategy.lr" in refused.stderr, refused.stderr[-2000:]
    assert "Warning" not in refused.stderr  # the check ran (a failing Hydra callback is only a warning)
    assert os.listdir(elsewhere) == []  # a refused command writes nothing, not even its default run dir
