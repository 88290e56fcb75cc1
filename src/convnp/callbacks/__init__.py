"""Callbacks for ``Sequential.fit``: one per file."""

from convnp.callbacks.base import Callback
from convnp.callbacks.checkpoint import ModelCheckpoint
from convnp.callbacks.early_stopping import EarlyStopping
from convnp.callbacks.scheduler import LearningRateScheduler

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "LearningRateScheduler"]
