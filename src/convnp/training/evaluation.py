"""Inference over a whole dataset in batches: ``evaluate`` (mean loss, accuracy) and ``predict``.

Both run the model in inference mode (Dropout off, batch norm on its running
statistics) one batch at a time, so memory stays bounded whatever N is. With
``flip_average=True`` (test-time augmentation for models trained with random
horizontal flips) each image and its mirror image are both classified and their
class probabilities averaged.

Under MPI both are collective (every rank calls them with the same data): each
rank runs its contiguous part of the data (``rank_bounds``); ``evaluate`` sums
the parts' loss and count over the ranks, ``predict`` gathers the parts' rows,
so every rank gets the one-process result (to float rounding).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from convnp.distributed import rank_bounds, world
from convnp.functional.activations import log_softmax, softmax_forward
from convnp.training.checks import as_batch, check_batch_size, check_loss, prepare_data
from convnp.training.input_range import warn_if_unfamiliar
from convnp.training.losses import count_correct, loss_and_grad


def outputs_in_batches(
    model, x: np.ndarray, batch_size: int, logits: bool = False, flip_average: bool = False
) -> Iterator[np.ndarray]:
    """Inference-mode outputs of ``x[start : start + batch_size]`` for start = 0, batch_size, ...

    With ``logits=True`` a final Softmax layer is skipped (its input is returned).
    With ``flip_average=True`` (needs ``logits=True``) each batch yields
    ``flip_averaged_logits`` of the batch's logits and its mirror image's.
    """
    if flip_average and not logits:
        raise ValueError("outputs_in_batches: flip_average needs logits=True")
    with model.logits_view(logits) as stop:
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            outputs = model.forward_layers(batch, training=False, stop=stop, keep_caches=False)
            if flip_average:
                mirrored = model.forward_layers(batch[..., ::-1], training=False, stop=stop, keep_caches=False)
                outputs = flip_averaged_logits(outputs, mirrored)
            yield outputs


def flip_averaged_logits(logits: np.ndarray, mirrored_logits: np.ndarray) -> np.ndarray:
    """Logits whose softmax is the mean of the two inputs' softmax probabilities.

        out = log((softmax(a) + softmax(b)) / 2)
            = logaddexp(log_softmax(a), log_softmax(b)) - log 2     (per row)

    A log-probability is a valid logit vector (its softmax is itself, the
    probabilities summing to 1), so losses and argmax work on ``out`` unchanged.

    Shape:
        logits, mirrored_logits: (N, classes) -> out: (N, classes), same dtype
    """
    averaged = np.logaddexp(log_softmax(logits), log_softmax(mirrored_logits)) - np.log(2.0)
    return averaged.astype(logits.dtype, copy=False)


def evaluate(
    model,
    x,
    y,
    batch_size: int = 256,
    loss: str = "cross_entropy",
    check_inputs: bool = True,
    flip_average: bool = False,
) -> dict[str, float]:
    """Mean loss and accuracy over ``(x, y)`` in inference mode, in batches.

    loss = sum over batches of (batch mean loss * batch size) / N;
    accuracy = correct predictions / N (0 for mse targets).
    ``flip_average=True`` scores the mean of the class probabilities of each
    image and its mirror image (cross-entropy only).
    Warns (``convnp.InputWarning``) when ``x`` lies far from the inputs the
    model was trained on (``model.input_stats``), unless ``check_inputs`` is
    False (``fit`` checks its validation data once, not every epoch).
    """
    batch_size = check_batch_size(batch_size, "evaluate")
    check_loss(loss, "evaluate")
    if flip_average and loss != "cross_entropy":
        raise ValueError(
            f"evaluate: flip_average averages class probabilities; it needs loss='cross_entropy', not {loss!r}"
        )
    x, y = prepare_data(model, x, y, "evaluate", loss)
    if check_inputs:
        warn_if_unfamiliar(model, x, "evaluate")
    communicator = world()
    part = _rank_part(len(x), communicator)
    x_part, y_part = x[part], y[part]
    total_loss, correct = 0.0, 0
    batches = outputs_in_batches(model, x_part, batch_size, logits=True, flip_average=flip_average)
    for start, outputs in zip(range(0, len(x_part), batch_size), batches):
        y_batch = y_part[start : start + batch_size]
        batch_loss, _ = loss_and_grad(outputs, y_batch, loss, 0.0)
        total_loss += batch_loss * len(y_batch)
        correct += count_correct(outputs, y_batch)
    if communicator.size > 1:
        totals = communicator.sum_in_rank_order(np.array([total_loss, correct], dtype=np.float64), "evaluate")
        total_loss, correct = float(totals[0]), int(totals[1])
    return {"loss": total_loss / len(x), "accuracy": correct / len(x)}


def predict(model, x, batch_size: int = 256, flip_average: bool = False) -> np.ndarray:
    """Class probabilities (N, classes): softmax of the outputs (or the model's own Softmax).

    ``flip_average=True``: the mean of the probabilities of each image and its mirror image.

    Warns (``convnp.InputWarning``) when ``x`` lies far from the inputs the
    model was trained on (``model.input_stats``).
    """
    batch_size = check_batch_size(batch_size, "predict")
    x = model.prepare_input(as_batch(x, "predict"))
    warn_if_unfamiliar(model, x, "predict")
    communicator = world()
    x_part = x[_rank_part(len(x), communicator)]
    outputs = outputs_in_batches(model, x_part, batch_size, logits=True, flip_average=flip_average)
    batches = [softmax_forward(out)[0] for out in outputs]
    if communicator.size == 1:
        return np.concatenate(batches, axis=0)
    rows = np.concatenate(batches, axis=0) if batches else np.empty((0, *model.output_shape), dtype=model.dtype)
    return communicator.gather_rows(rows, "predict")


def _rank_part(count: int, communicator) -> slice:
    """This rank's contiguous part of ``count`` samples (all of them in one process)."""
    bounds = rank_bounds(count, communicator.size)
    return slice(bounds[communicator.rank], bounds[communicator.rank + 1])
