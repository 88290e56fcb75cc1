"""Training and inference over datasets: ``fit``, ``evaluate``, ``predict``.

Read in this order:

- ``loop``: ``fit`` (the epoch and batch loops) and ``train_step`` (one minibatch).
- ``evaluation``: ``evaluate``, ``predict``, ``outputs_in_batches`` (inference in batches).
- ``losses``: the losses chosen by name, ``LOSSES``.
- ``checks``: the checks of the data and options.
- ``input_range``: the range and mean ``fit`` records, and the warnings on
  inputs far from them (``convnp.InputWarning``).
- ``progress``: the per-epoch progress bar.

The side jobs of a run are callbacks in ``convnp.callbacks``: ``History`` (what
``fit`` returns) and ``BackupAndRestore`` (checkpoints and exact resume).
"""

from convnp.callbacks.errors import TrainingDivergedError
from convnp.callbacks.history import HISTORY_KEYS, History
from convnp.training.checks import as_batch, check_batch_size, check_labels, prepare_data
from convnp.training.evaluation import evaluate, outputs_in_batches, predict
from convnp.training.loop import fit, train_step
from convnp.training.losses import LOSSES

__all__ = [
    "fit", "train_step", "evaluate", "predict", "outputs_in_batches", "History", "HISTORY_KEYS",
    "TrainingDivergedError", "LOSSES", "prepare_data", "check_labels", "check_batch_size", "as_batch",
]  # fmt: skip
