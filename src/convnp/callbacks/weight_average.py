"""An exponential moving average of the weights, validated each epoch and kept at the end."""

from __future__ import annotations

import numpy as np

from convnp.callbacks.base import Callback


class ExponentialMovingAverage(Callback):
    """Keep a running average of every weight and buffer; the model ends with the average.

    After every optimizer step (batch ``n = 1, 2, ...``)::

        d = min(decay, (1 + n) / (10 + n))      with warmup (default), else d = decay
        average = d * average + (1 - d) * weight

    for every parameter and floating-point buffer (batch norm's running mean and
    variance too; integer buffers are copied). The warm-up lets the average
    forget the random initial weights within the first few dozen steps instead
    of over ``1 / (1 - decay)`` of them (TensorFlow's ``num_updates``). The
    average is what ``fit`` validates after each epoch (the training weights
    are swapped out and back in around the validation pass), and at the end of
    ``fit`` it replaces the training weights, so the model returned, saved and
    evaluated is the averaged one. Averaging smooths the last steps' noise:
    with a decaying learning rate it is usually a little better than the last
    weights, and it never costs a forward or backward pass.

    Args:
        decay: weight of the old average, in [0, 1); 0.999 averages over about
            the last 1,000 steps.
        warmup: use ``min(decay, (1 + n) / (10 + n))`` for the n-th update.

    The average and the update count are checkpointed by ``fit(checkpoint=...)``,
    so a resumed run averages as an uninterrupted one. Under MPI every rank
    holds the same weights, hence the same average. Callbacks that read the
    model at an epoch's end (``EarlyStopping``'s best weights,
    ``ModelCheckpoint``) see the training weights there, while the validation
    metrics they monitor are the average's.
    """

    def __init__(self, decay: float = 0.999, warmup: bool = True) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise ValueError(f"ExponentialMovingAverage: decay must be a number in [0, 1), got {decay!r}")
        self.decay, self.warmup = float(decay), bool(warmup)
        self.updates = 0
        self.average: dict[str, np.ndarray] | None = None
        self._training_state: dict[str, np.ndarray] | None = None

    def _current(self) -> dict[str, np.ndarray]:
        """The model's weights and buffers by state_dict key, as the arrays themselves (no copies)."""
        arrays = {name: param.data for name, param in self.model.named_parameters()}
        arrays.update(self.model.named_buffers())
        return arrays

    def current_decay(self) -> float:
        """The ``d`` of the next update."""
        if not self.warmup:
            return self.decay
        n = self.updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    def on_train_begin(self) -> None:
        self.updates = 0
        self.average = {name: array.copy() for name, array in self._current().items()}

    def on_batch_end(self, batch: int, loss: float) -> None:
        d = self.current_decay()
        for name, array in self._current().items():
            average = self.average[name]
            if np.issubdtype(average.dtype, np.floating):
                average *= d  # in place: average = d * average + (1 - d) * weight
                average += (1 - d) * array
            else:
                average[...] = array
        self.updates += 1

    def on_validation_begin(self) -> None:
        self._training_state = self.model.state_dict()
        self.model.load_state_dict(self.average)

    def on_validation_end(self) -> None:
        self.model.load_state_dict(self._training_state)
        self._training_state = None

    def on_train_end(self) -> None:
        if self.average is not None:
            self.model.load_state_dict(self.average)

    def state_dict(self) -> dict:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])

    def state_arrays(self) -> dict[str, np.ndarray]:
        return dict(self.average or {})

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Put back ``state_arrays``'s output; ``ValueError`` when the arrays do not fit the model."""
        if not arrays:
            return
        expected = self._current()
        if set(arrays) != set(expected) or any(arrays[k].shape != v.shape for k, v in expected.items()):
            raise ValueError(
                "ExponentialMovingAverage: the saved average does not fit the model "
                f"(keys and shapes {[(key, value.shape) for key, value in arrays.items()]})"
            )
        self.average = {key: np.array(arrays[key], dtype=expected[key].dtype) for key in expected}
