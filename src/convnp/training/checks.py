"""Checks of the data and options given to ``fit``, ``evaluate`` and ``predict``.

Each raises ``ValueError`` or ``TypeError`` naming the function (``owner``) and
the offending value, before anything changes.
"""

from __future__ import annotations

import numpy as np

from convnp.checks import positive_int
from convnp.training.losses import LOSSES


def check_labels(y, num_samples: int, num_classes: int | None, owner: str) -> np.ndarray:
    """Integer class labels of length ``num_samples`` within [0, num_classes).

    Floats that are all integral (1.0, 2.0) are accepted and converted.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{owner}: expected labels of shape (N,), got {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise TypeError(f"{owner}: labels must be integer class indices, got dtype {y.dtype}")
    if len(y) != num_samples:
        raise ValueError(f"{owner}: x has {num_samples} samples but y has {len(y)} labels")
    if num_classes is not None and y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"{owner}: labels must lie in [0, {num_classes}) for a model with {num_classes} outputs, "
            f"got values from {y.min()} to {y.max()}"
        )
    return y.astype(np.int64, copy=False)


def as_batch(x, owner: str) -> np.ndarray:
    """``x`` as a non-empty array with a batch axis (ValueError naming ``owner`` otherwise)."""
    try:
        x = np.asarray(x)
    except ValueError as error:  # ragged nested lists
        raise ValueError(f"{owner}: x is not a rectangular array ({error})") from error
    if x.ndim == 0:
        raise ValueError(f"{owner}: x must be a batch of samples (N, ...), got a scalar")
    if len(x) == 0:
        raise ValueError(f"{owner}: x is empty (shape {x.shape}); need at least one sample")
    return x


def check_batch_size(batch_size, owner: str) -> int:
    """``batch_size`` as an int >= 1; ``ValueError`` otherwise, a non-integer such as 2.0 included."""
    try:
        return positive_int(batch_size, "batch_size", owner)
    except TypeError as error:
        # The same wording, but a batch size has always been a ValueError here, whatever its type.
        raise ValueError(str(error)) from None


def check_loss(loss: str, owner: str) -> str:
    """``loss`` when it is one of ``LOSSES``."""
    if loss not in LOSSES:
        raise ValueError(f"{owner}: unknown loss {loss!r}; valid: {list(LOSSES)}")
    return loss


def prepare_data(model, x, y, owner: str, loss: str = "cross_entropy") -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert ``(x, y)`` for the model; builds the model if needed.

    ``y`` holds integer labels, or for "mse" targets of shape (N, *output_shape).
    """
    x = as_batch(x, owner)
    x = model.prepare_input(x)
    classes = int(np.prod(model.output_shape))
    if loss == "mse" and np.asarray(y).ndim > 1:
        y = np.asarray(y, dtype=model.dtype)
        if y.shape != (len(x), *model.output_shape):
            raise ValueError(f"{owner}: mse targets must have shape {(len(x), *model.output_shape)}, got {y.shape}")
        return x, y
    return x, check_labels(y, len(x), classes, owner)


def prepare_validation_data(model, validation_data, loss: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``fit``'s ``validation_data``: None, or a pair ``(x_val, y_val)`` checked like the training data."""
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise ValueError("fit: validation_data must be a pair (x_val, y_val)")
    return prepare_data(model, *validation_data, "fit (validation_data)", loss)


def check_fit_options(epochs, batch_size, loss: str, clip_norm, augment, checkpoint, resume: bool) -> int:
    """Check ``fit``'s options (in the order of its signature); returns ``batch_size`` as an int."""
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"fit: epochs must be an int >= 0, got {epochs!r}")
    batch_size = check_batch_size(batch_size, "fit")
    check_loss(loss, "fit")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"fit: clip_norm must be > 0, got {clip_norm!r}")
    if augment is not None and not callable(augment):
        raise TypeError(f"fit: augment must be a callable f(x_batch, rng) -> x_batch, got {augment!r}")
    if resume and checkpoint is None:
        raise ValueError("fit: resume=True needs checkpoint=PATH (the file to resume from)")
    return batch_size
