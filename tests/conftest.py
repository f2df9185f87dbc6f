"""Fixtures only; the helpers tests import live in tests/helpers.py."""

import pytest


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

    torch.set_num_threads(1)  # in-process tests: see tests/helpers.py TEST_ENV
