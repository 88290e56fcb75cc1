"""The error that stops a diverging ``fit`` (raised by the loop and by ``BackupAndRestore``)."""

from __future__ import annotations


class TrainingDivergedError(FloatingPointError):
    """The loss (or a parameter) became NaN or infinite during ``fit``.

    ``epoch`` and ``batch`` (1-based; ``batch`` is None when the parameters were
    found non-finite at the end of an epoch) say where. ``fit`` never writes a
    checkpoint from a diverged state: the last checkpoint on disk is the last
    good one.
    """

    def __init__(self, message: str, epoch: int | None = None, batch: int | None = None) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
