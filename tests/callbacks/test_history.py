"""``History`` reads like the dict of per-epoch lists it holds."""

from __future__ import annotations

from convnp.callbacks import History
from convnp.callbacks.history import HISTORY_KEYS


def _two_epochs() -> History:
    history = History()
    history.append({"loss": 0.9, "accuracy": 0.6, "lr": 0.01, "seconds": 1.5})
    history.append({"loss": 0.5, "accuracy": 0.8, "lr": 0.01, "seconds": 1.25})
    return history


def test_history_reads_like_a_dict():
    history = _two_epochs()
    assert list(history.keys()) == list(HISTORY_KEYS)
    assert list(history) == list(HISTORY_KEYS)
    assert dict(history.items()) == history.to_dict()
    assert list(history.values())[0] == [0.9, 0.5]
    assert history["loss"] == [0.9, 0.5] and history.get("val_loss") == [None, None]
    assert history.get("missing") is None and history.get("missing", []) == []
    assert "loss" in history and "missing" not in history
    assert len(history) == 2  # epochs, as before
    assert {key: values[-1] for key, values in history.items()}["accuracy"] == 0.8
