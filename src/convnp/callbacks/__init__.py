"""Callbacks for ``Sequential.fit``: one per file.

``base`` holds the interface (``Callback``) and ``run_state`` what a run shares
with its callbacks (``RunState``); ``History`` and ``BackupAndRestore`` are the
two that ``fit`` adds itself (the latter with ``checkpoint=``).
"""

from convnp.callbacks.backup_and_restore import BackupAndRestore
from convnp.callbacks.base import Callback
from convnp.callbacks.checkpoint import ModelCheckpoint
from convnp.callbacks.early_stopping import EarlyStopping
from convnp.callbacks.history import History
from convnp.callbacks.scheduler import LearningRateScheduler
from convnp.callbacks.weight_average import ExponentialMovingAverage

__all__ = [
    "Callback",
    "History",
    "BackupAndRestore",
    "EarlyStopping",
    "ExponentialMovingAverage",
    "ModelCheckpoint",
    "LearningRateScheduler",
]
