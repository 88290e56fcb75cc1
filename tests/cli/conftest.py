"""Fixtures of the command-line tests: the digits test split and one short training run."""

from __future__ import annotations

from pathlib import Path

import pytest

from convnp.data import load as load_dataset
from tests.cli.helpers import train


@pytest.fixture(scope="session")
def digits_test():
    _, test = load_dataset("digits")
    return test


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One epoch of the default digits recipe, with plots."""
    run = tmp_path_factory.mktemp("run") / "digits"
    assert train(run, "--epochs", "1") == 0
    return run
