"""Save the model whenever a monitored metric improves (under MPI, rank 0 writes)."""

from __future__ import annotations

import os

from convnp.callbacks.base import Callback, monitor_improved
from convnp.distributed import is_main


class ModelCheckpoint(Callback):
    """Write the model to ``path`` at epoch ends (atomically, via ``Sequential.save``).

    Args:
        path: the ``.npz`` file; may contain ``{epoch}`` (1-based) to keep one file per epoch.
        monitor: the History key to compare (default "val_loss").
        save_best_only: save only when ``monitor`` improves (default); else every epoch.
        mode: "min", "max" or "auto".
    """

    def __init__(
        self, path: str | os.PathLike, monitor: str = "val_loss", save_best_only: bool = True, mode: str = "auto"
    ) -> None:
        self.path, self.monitor, self.save_best_only, self.mode = str(path), monitor, save_best_only, mode
        self.best: float | None = None
        self.saved_paths: list[str] = []

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                raise KeyError(f"ModelCheckpoint: {self.monitor!r} is not in the epoch logs {sorted(logs)}")
            if not monitor_improved(value, self.best, self.monitor, self.mode, 0.0):
                return
            self.best = value
        path = self.path.format(epoch=epoch + 1)
        if is_main():  # the other MPI ranks hold the same weights
            self.saved_paths.append(str(self.model.save(path)))

    def state_dict(self) -> dict:
        """The best value so far, saved in fit checkpoints so a resumed run compares against it."""
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]
