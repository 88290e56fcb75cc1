"""The losses ``fit`` and ``evaluate`` compute, chosen by name, and the count of correct predictions."""

from __future__ import annotations

import numpy as np

from convnp.functional.losses import mse_loss, softmax_cross_entropy

LOSSES = ("cross_entropy", "mse")


def loss_and_grad(outputs: np.ndarray, y: np.ndarray, loss: str, label_smoothing: float) -> tuple[float, np.ndarray]:
    """The mean loss over the batch and its gradient with respect to ``outputs``.

    "cross_entropy": ``outputs`` are logits (N, classes), ``y`` integer labels (N,).
    "mse": ``y`` is either targets shaped like ``outputs`` or integer labels,
    which are compared as one-hot rows.
    """
    if loss == "cross_entropy":
        return softmax_cross_entropy(outputs, y, label_smoothing=label_smoothing)
    target = y if y.ndim > 1 else np.eye(outputs.shape[1], dtype=outputs.dtype)[y]
    return mse_loss(outputs, target)


def count_correct(outputs: np.ndarray, y: np.ndarray) -> int:
    """How many rows of ``outputs`` have their largest value at the label (0 for mse targets)."""
    if y.ndim != 1:
        return 0
    return int(np.count_nonzero(outputs.argmax(axis=1) == y))
