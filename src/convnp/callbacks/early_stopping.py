"""Stop training when a monitored metric stops improving."""

from __future__ import annotations

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
        """Counters saved in fit checkpoints, so a resumed run stops when an uninterrupted one would.

        The best weights themselves are not part of it: after a resume,
        ``restore_best_weights`` can only restore the best epoch seen since.
        """
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], int(state["wait"])

    def on_train_end(self) -> None:
        if self.restore_best_weights and self.best_state is not None and self.stopped_epoch is not None:
            self.model.load_state_dict(self.best_state)
