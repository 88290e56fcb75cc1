"""The callback interface of ``Sequential.fit``."""

from __future__ import annotations


class Callback:
    """Hooks called by the fit loop; override the ones you need.

    Before training starts, ``fit`` sets ``self.model`` and ``self.optimizer``.
    ``logs`` at epoch end hold that epoch's History entry (loss, accuracy,
    val_loss, val_accuracy, lr, seconds). Setting ``self.model.stop_training``
    to True ends training after the current epoch.
    """

    model = None
    optimizer = None

    def set_context(self, model, optimizer) -> None:
        self.model = model
        self.optimizer = optimizer

    def on_train_begin(self) -> None:
        pass

    def on_epoch_begin(self, epoch: int) -> None:
        pass

    def on_batch_end(self, batch: int, loss: float) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        pass

    def on_train_end(self) -> None:
        pass


def monitor_improved(value: float, best: float | None, monitor: str, mode: str, min_delta: float) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` ("min" for losses, "max" for accuracies)."""
    if best is None:
        return True
    if mode == "auto":
        mode = "max" if "acc" in monitor else "min"
    if mode == "min":
        return value < best - min_delta
    if mode == "max":
        return value > best + min_delta
    raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
