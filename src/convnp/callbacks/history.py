"""The record of a ``fit`` run: one entry per epoch for each of ``HISTORY_KEYS``."""

from __future__ import annotations

import os
from collections.abc import ItemsView, Iterator, KeysView, ValuesView

from convnp.callbacks.base import Callback
from convnp.files.atomic import atomic_write_json

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


class History(Callback):
    """Per-epoch records of a ``fit`` run; ``fit`` returns it.

    ``history.history`` maps each of loss, accuracy, val_loss, val_accuracy, lr
    and seconds to a list with one entry per epoch (val_* are None without
    validation data). The History reads like that dict: ``history["loss"]``,
    ``history.keys()``, ``items()``, ``values()``, ``get``, ``"loss" in history``
    and ``for key in history``; ``len(history)`` is the number of epochs.

    As a callback it records each epoch's logs at ``on_epoch_end``; ``fit``
    runs it before the other callbacks, so it keeps the values the loop
    computed even if a later callback changes the logs.
    """

    def __init__(self, records: dict[str, list] | None = None) -> None:
        self.history: dict[str, list] = {key: [] for key in HISTORY_KEYS}
        if records:
            self.load_records(records)

    def load_records(self, records: dict[str, list]) -> None:
        """Replace the records with ``records`` (a ``to_dict()``); a resumed run continues its history."""
        for key in HISTORY_KEYS:
            self.history[key] = list(records.get(key, []))

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.append(logs)

    def append(self, logs: dict) -> None:
        """Add one epoch: ``logs[key]`` for every key (None when missing)."""
        for key in HISTORY_KEYS:
            self.history[key].append(logs.get(key))

    @property
    def epochs(self) -> int:
        return len(self.history["loss"])

    def __getitem__(self, key: str) -> list:
        return self.history[key]

    def keys(self) -> KeysView[str]:
        return self.history.keys()

    def values(self) -> ValuesView[list]:
        return self.history.values()

    def items(self) -> ItemsView[str, list]:
        return self.history.items()

    def get(self, key: str, default=None):
        return self.history.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.history

    def __iter__(self) -> Iterator[str]:
        return iter(self.history)

    def __len__(self) -> int:
        return self.epochs

    def to_dict(self) -> dict[str, list]:
        return {key: list(values) for key, values in self.history.items()}

    def save(self, path: str | os.PathLike) -> None:
        """Write the records as JSON, atomically."""
        atomic_write_json(path, self.to_dict())

    def __repr__(self) -> str:
        return f"History(epochs={self.epochs}, keys={list(self.history)})"
