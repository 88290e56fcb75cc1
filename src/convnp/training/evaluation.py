"""Inference over a whole dataset in batches: ``evaluate`` (mean loss, accuracy) and ``predict``.

Both run the model in inference mode (Dropout off, batch norm on its running
statistics) one batch at a time, so memory stays bounded whatever N is.

Under MPI both are collective (every rank calls them with the same data): each
rank runs its contiguous part of the data (``rank_bounds``); ``evaluate`` sums
the parts' loss and count over the ranks, ``predict`` gathers the parts' rows,
so every rank gets the one-process result (to float rounding).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from convnp.distributed import rank_bounds, world
from convnp.functional.activations import softmax_forward
from convnp.training.checks import as_batch, check_batch_size, check_loss, prepare_data
from convnp.training.input_range import warn_if_unfamiliar
from convnp.training.losses import count_correct, loss_and_grad


def outputs_in_batches(model, x: np.ndarray, batch_size: int, logits: bool = False) -> Iterator[np.ndarray]:
    """Inference-mode outputs of ``x[start : start + batch_size]`` for start = 0, batch_size, ...

    With ``logits=True`` a final Softmax layer is skipped (its input is returned).
    """
    with model.logits_view(logits) as stop:
        for start in range(0, len(x), batch_size):
            yield model.forward_layers(x[start : start + batch_size], training=False, stop=stop, keep_caches=False)


def evaluate(
    model, x, y, batch_size: int = 256, loss: str = "cross_entropy", check_inputs: bool = True
) -> dict[str, float]:
    """Mean loss and accuracy over ``(x, y)`` in inference mode, in batches.

    loss = sum over batches of (batch mean loss * batch size) / N;
    accuracy = correct predictions / N (0 for mse targets).
    Warns (``convnp.InputWarning``) when ``x`` lies far from the inputs the
    model was trained on (``model.input_stats``), unless ``check_inputs`` is
    False (``fit`` checks its validation data once, not every epoch).
    """
    batch_size = check_batch_size(batch_size, "evaluate")
    check_loss(loss, "evaluate")
    x, y = prepare_data(model, x, y, "evaluate", loss)
    if check_inputs:
        warn_if_unfamiliar(model, x, "evaluate")
    communicator = world()
    part = _rank_part(len(x), communicator)
    x_part, y_part = x[part], y[part]
    total_loss, correct = 0.0, 0
    batches = outputs_in_batches(model, x_part, batch_size, logits=True)
    for start, outputs in zip(range(0, len(x_part), batch_size), batches):
        y_batch = y_part[start : start + batch_size]
        batch_loss, _ = loss_and_grad(outputs, y_batch, loss, 0.0)
        total_loss += batch_loss * len(y_batch)
        correct += count_correct(outputs, y_batch)
    if communicator.size > 1:
        totals = communicator.sum_in_rank_order(np.array([total_loss, correct], dtype=np.float64), "evaluate")
        total_loss, correct = float(totals[0]), int(totals[1])
    return {"loss": total_loss / len(x), "accuracy": correct / len(x)}


def predict(model, x, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, classes): softmax of the outputs (or the model's own Softmax).

    Warns (``convnp.InputWarning``) when ``x`` lies far from the inputs the
    model was trained on (``model.input_stats``).
    """
    batch_size = check_batch_size(batch_size, "predict")
    x = model.prepare_input(as_batch(x, "predict"))
    warn_if_unfamiliar(model, x, "predict")
    communicator = world()
    x_part = x[_rank_part(len(x), communicator)]
    batches = [softmax_forward(out)[0] for out in outputs_in_batches(model, x_part, batch_size, logits=True)]
    if communicator.size == 1:
        return np.concatenate(batches, axis=0)
    rows = np.concatenate(batches, axis=0) if batches else np.empty((0, *model.output_shape), dtype=model.dtype)
    return communicator.gather_rows(rows, "predict")


def _rank_part(count: int, communicator) -> slice:
    """This rank's contiguous part of ``count`` samples (all of them in one process)."""
    bounds = rank_bounds(count, communicator.size)
    return slice(bounds[communicator.rank], bounds[communicator.rank + 1])
