"""Loss functions: each returns ``(loss, dpred)``, the scalar loss as a Python
float and its gradient with respect to the prediction, in the prediction's dtype.

Both losses average over the batch (cross-entropy) or over every element (MSE),
as PyTorch's defaults (``reduction="mean"``) do, so the gradient carries the
matching 1/N or 1/size factor.
"""

from __future__ import annotations

import numbers

import numpy as np

from convnp.checks import float_array
from convnp.functional.activations import log_softmax

__all__ = ["softmax_cross_entropy", "mse_loss"]


def _check_labels(labels: np.ndarray, batch: int, classes: int, owner: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{owner}: labels must be integer class indices, got dtype {labels.dtype} "
            "(for one-hot targets pass labels.argmax(axis=1))"
        )
    if labels.shape != (batch,):
        raise ValueError(f"{owner}: labels must have shape ({batch},) to match logits, got {labels.shape}")
    if batch and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(
            f"{owner}: labels must lie in [0, {classes}), got values from {labels.min()} to {labels.max()}"
        )
    return labels


def softmax_cross_entropy(
    logits: np.ndarray, labels: np.ndarray, label_smoothing: float = 0.0
) -> tuple[float, np.ndarray]:
    """Softmax followed by cross-entropy, averaged over the batch.

    With log_p = log_softmax(logits) along the class axis, and the target
    distribution q smoothed as PyTorch's CrossEntropyLoss(label_smoothing=s) does,

        q[n, c] = (1 - s) * [c == labels[n]] + s / C
        loss    = -(1/N) * sum_n sum_c q[n, c] * log_p[n, c]
        dlogits = (softmax(logits) - q) / N

    (the gradient of -sum_c q[c] log_p[c] w.r.t. logit j is p[j] * sum_c q[c] - q[j],
    and q sums to 1). log_p comes from the max-shifted log-sum-exp, so any finite
    logits give a finite loss: logits [1e4, -1e4] with label 1 give exactly 2e4.

    Shape:
        logits: (N, C)
        labels: (N,) integers in [0, C)
        dlogits: (N, C), logits' dtype
    """
    owner = "softmax_cross_entropy"
    logits = float_array(logits, owner, "logits")
    if logits.ndim != 2 or logits.shape[0] < 1 or logits.shape[1] < 1:
        raise ValueError(f"{owner}: logits must have shape (N, C) with N, C >= 1, got {logits.shape}")
    batch, classes = logits.shape
    labels = _check_labels(labels, batch, classes, owner)
    if (
        isinstance(label_smoothing, bool)
        or not isinstance(label_smoothing, numbers.Real)
        or not 0 <= label_smoothing <= 1
    ):
        raise ValueError(f"{owner}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    smoothing = float(label_smoothing)

    log_probs = log_softmax(logits, axis=1)  # (N, C)
    rows = np.arange(batch)
    target = np.full(logits.shape, smoothing / classes, dtype=logits.dtype)  # q: (N, C)
    target[rows, labels] += 1 - smoothing
    # Sum in float64: the loss is reported as a Python float anyway.
    loss = -float(np.sum(target * log_probs, dtype=np.float64)) / batch
    with np.errstate(under="ignore"):
        probs = np.exp(log_probs)  # (N, C)
    dlogits = (probs - target) / logits.dtype.type(batch)
    return loss, dlogits


def mse_loss(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error over every element.

    loss  = (1/M) * sum (pred - target)**2,   M = pred.size
    dpred = 2 * (pred - target) / M

    Shape:
        pred, target: any, equal; dpred: same as pred, pred's dtype
    """
    owner = "mse_loss"
    pred, target = float_array(pred, owner, "pred"), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"{owner}: pred shape {pred.shape} differs from target shape {target.shape}")
    if pred.size == 0:
        raise ValueError(f"{owner}: pred is empty")
    # The target is cast to pred's dtype so a float64 target cannot promote the gradient.
    diff = pred - target.astype(pred.dtype, copy=False)
    loss = float(np.mean(np.square(diff), dtype=np.float64))
    dpred = diff * pred.dtype.type(2 / pred.size)
    return loss, dpred
