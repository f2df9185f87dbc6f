import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tiny, fast defaults for end-to-end runs: 32 px synthetic data, random-init resnet18, CSV logging.

def tiny(data="synthetic"):
    base = ["backbone=resnet18", "backbone.pretrained=false", f"data={data}", "data.image_size=32",
            "data.batch_size=8", "trainer.max_epochs=2", "logger=csv", "callbacks.rich_progress_bar.enabled=false"]
    return base + (["data.per_class=12"] if data == "synthetic" else [])


TINY = tiny()


# The suite runs on 2 pytest-xdist workers (pyproject addopts); one torch thread per process keeps
# two concurrent runs from oversubscribing 2 cores (OpenMP spin-waits make that many times slower).
TEST_ENV = {"TL_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def run_train(args, run_dir, env=None, timeout=600):
    """Run `python train.py` in a subprocess; return CompletedProcess."""
    full_env = {**os.environ, **TEST_ENV, **(env or {})}
    cmd = [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def run_multirun(args, sweep_dir, env=None, timeout=900):
    """Run `python train.py -m` into ``sweep_dir``; return CompletedProcess."""
    full_env = {**os.environ, **TEST_ENV, **(env or {})}
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", f"hydra.sweep.dir={sweep_dir}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def train_inprocess(args, run_dir):
    """Compose, validate and run in this process, as train.py does; returns (metrics, summary)."""
    from tl_lightning.compose import compose_config
    from tl_lightning.run import train

    cfg = compose_config(args, str(run_dir))
    return train(cfg, str(run_dir))


def expect_user_error(args, run_dir, *fragments) -> str:
    """The run stops with one of the project's error types (train.py prints it as its one line, exit 2)."""
    from tl_lightning.errors import TLError

    with pytest.raises(TLError) as info:
        train_inprocess(args, run_dir)
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.fixture
def compose():
    """Compose conf/train.yaml with overrides, as train.py would, unvalidated (the tests validate)."""
    from tl_lightning.compose import compose_config

    def _compose(overrides=(), run_dir="/tmp/tl-test-run"):
        return compose_config(overrides, run_dir, validate=False)

    return _compose


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("TL_OFFLINE", "1")


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)  # in-process tests: see TEST_ENV
