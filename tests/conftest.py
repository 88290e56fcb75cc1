"""Fixtures shared by more than one test folder."""

from __future__ import annotations

import pytest

from tests.model_files import data, rich_model


@pytest.fixture
def saved(tmp_path):
    """A trained model (non-trivial running statistics) and the path it is saved at."""
    model = rich_model()
    x, y = data()
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, seed=0)
    return model, model.save(tmp_path / "model.npz")
