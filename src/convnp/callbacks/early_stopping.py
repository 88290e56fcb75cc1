"""Stop training when a monitored metric stops improving."""

from __future__ import annotations

import numpy as np

from convnp.callbacks.base import Callback, monitor_improved


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs without improvement of ``monitor``.

    Args:
        monitor: a History key, e.g. "val_loss" (default) or "val_accuracy".
        patience: epochs without improvement tolerated.
        min_delta: the smallest change that counts as an improvement.
        mode: "min", "max" or "auto" (max for accuracies, min otherwise).
        restore_best_weights: at the end, put back the weights of the best epoch.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 3,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = True,
    ) -> None:
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience}")
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, min_delta, mode
        self.restore_best_weights = restore_best_weights
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_state = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_train_begin(self) -> None:
        self.best, self.best_epoch, self.best_state, self.wait, self.stopped_epoch = None, None, None, 0, None

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        value = logs.get(self.monitor)
        if value is None:
            raise KeyError(f"EarlyStopping: {self.monitor!r} is not in the epoch logs {sorted(logs)}")
        if monitor_improved(value, self.best, self.monitor, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_state = self.model.state_dict()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def state_dict(self) -> dict:
        """The counters fit checkpoints keep, so that a resumed run stops when an uninterrupted one would."""
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], int(state["wait"])
        # The counters say whether this callback stopped the run, and when: patience ran out
        # ``wait`` epochs after the best one.
        stopped = self.wait > self.patience and self.best_epoch is not None
        self.stopped_epoch = self.best_epoch + self.wait if stopped else None

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The best epoch's weights (the model's state_dict) that fit checkpoints keep beside ``state_dict``.

        With them a resumed run restores the same weights as an uninterrupted
        one, even when the best epoch came before the interruption.
        """
        return dict(self.best_state or {})

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Put back ``state_arrays``'s output; ``ValueError`` when the weights do not fit the model."""
        if arrays and self.model is not None:
            expected = self.model.state_dict()
            if set(arrays) != set(expected) or any(arrays[k].shape != v.shape for k, v in expected.items()):
                raise ValueError(
                    "EarlyStopping: the saved best weights do not fit the model "
                    f"(keys and shapes {[(key, value.shape) for key, value in arrays.items()]})"
                )
        self.best_state = dict(arrays) or None

    def on_train_end(self) -> None:
        if self.restore_best_weights and self.best_state is not None and self.stopped_epoch is not None:
            self.model.load_state_dict(self.best_state)
