"""The callback interface of ``Sequential.fit``, and the list that calls a hook on every callback."""

from __future__ import annotations

from collections.abc import Iterable

from convnp.callbacks.run_state import RunState


class Callback:
    """Hooks called by the fit loop; override the ones you need.

    Before training starts, ``fit`` sets ``self.model``, ``self.optimizer`` and
    ``self.run`` (the ``RunState``: data layout, random generators, history,
    position). ``logs`` at epoch end hold that epoch's History entry (loss,
    accuracy, val_loss, val_accuracy, lr, seconds). Setting
    ``self.model.stop_training`` to True ends training after the current epoch.

    A callback with state that a resumed run needs (``fit(checkpoint=...)``)
    defines ``state_dict()`` -> a JSON-serialisable dict and
    ``load_state_dict(state)``, and for arrays ``state_arrays()`` -> a dict
    of numeric arrays and ``load_state_arrays(arrays)`` (``EarlyStopping``
    keeps its counters in the first and its best weights in the second). On
    resume they are called after ``on_train_begin``, before training goes on.
    """

    model = None
    optimizer = None
    run: RunState | None = None

    def set_context(self, model, optimizer, run: RunState) -> None:
        self.model = model
        self.optimizer = optimizer
        self.run = run

    def on_train_begin(self) -> None:
        pass

    def on_epoch_begin(self, epoch: int) -> None:
        pass

    def on_batch_end(self, batch: int, loss: float) -> None:
        pass

    def on_interrupt(self) -> None:
        """Ctrl-C stopped the run after a batch (``self.run`` holds the position); fit raises KeyboardInterrupt next."""

    def on_validation_begin(self) -> None:
        """Before the validation pass after each epoch (only with ``validation_data``)."""

    def on_validation_end(self) -> None:
        """After the validation pass, before ``on_epoch_end``."""

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        pass

    def on_train_end(self) -> None:
        pass


class CallbackList:
    """Calls each hook on every callback, in the order given."""

    def __init__(self, callbacks: Iterable[Callback], model, optimizer, run: RunState) -> None:
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            callback.set_context(model, optimizer, run)

    def on_train_begin(self) -> None:
        for callback in self.callbacks:
            callback.on_train_begin()

    def on_epoch_begin(self, epoch: int) -> None:
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch)

    def on_batch_end(self, batch: int, loss: float) -> None:
        for callback in self.callbacks:
            callback.on_batch_end(batch, loss)

    def on_interrupt(self) -> None:
        for callback in self.callbacks:
            callback.on_interrupt()

    def on_validation_begin(self) -> None:
        for callback in self.callbacks:
            callback.on_validation_begin()

    def on_validation_end(self) -> None:
        for callback in reversed(self.callbacks):  # undone in the opposite order
            callback.on_validation_end()

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_train_end(self) -> None:
        for callback in self.callbacks:
            callback.on_train_end()


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
