"""Callback state that survives a resume, arrays included: a run with
``EarlyStopping(restore_best_weights=True)`` interrupted anywhere, before or after its
best epoch, and resumed, ends with the weights of the run that was never interrupted.

A fit checkpoint keeps each callback's ``state_dict()`` in its JSON and the arrays of
its ``state_arrays()`` as entries of their own ("extra/callbacks.<index>.<key>"),
and whether a callback stopped the run (docs/guarantees.md, section 3).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

import convnp
from convnp import callbacks, nn
from convnp.serialization import load_file
from tests.model_files import description, read_entries, rewrite
from tests.training.test_resume import (
    BATCH,
    Interrupt,
    augment,
    dataset,
    make_optimizer,
    make_scheduler,
)

EPOCHS = 8  # the run stops early, after its fifth epoch


def make_model() -> convnp.Sequential:
    """test_resume's model, with no bias in the convolution and the seed that makes the run's shape.

    A batch norm follows the convolution, so the bias's gradient is 0 but for
    rounding, and Adam would turn that noise into steps of full size: the
    epochs at which the run peaks and stops would hang on the last bits of the
    arithmetic. Without it the validation losses of the run's epochs lie at
    least 1e-2 apart, and the run is the one the tests describe (best epoch 2
    of 5) whatever the rounding.
    """
    layers = [nn.Conv2D(3, 3, padding=1, use_bias=False), nn.BatchNorm2D(), nn.ReLU(), nn.MaxPool2D(2),
              nn.Flatten(), nn.Dropout(0.3), nn.Dense(4)]  # fmt: skip
    return convnp.Sequential(layers, input_shape=(1, 6, 6), dtype="float32", seed=9)


def validation_data():
    """Noisy copies of some training images, a quarter of them relabelled: the validation
    loss improves for three epochs, then worsens."""
    x, y = dataset()
    rng = np.random.default_rng(3)
    x_val = x[:16] + rng.normal(0, 0.3, x[:16].shape).astype(x.dtype)
    y_val = y[:16].copy()
    y_val[:4] = rng.integers(0, 4, 4)
    return x_val, y_val


class WeightAverage(callbacks.Callback):
    """An exponential moving average of the weights after every batch: a callback whose state is arrays."""

    def __init__(self, decay: float = 0.9) -> None:
        self.decay = decay
        self.average: dict[str, np.ndarray] = {}

    def on_train_begin(self) -> None:
        self.average = {}

    def on_batch_end(self, batch: int, loss: float) -> None:
        for key, param in self.model.named_parameters():
            previous = self.average.get(key, param.data)
            self.average[key] = self.decay * previous + (1 - self.decay) * param.data

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {key: value.copy() for key, value in self.average.items()}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.average = dict(arrays)


def run(checkpoint=None, interrupt: callbacks.Callback | None = None, model=None, optimizer=None):
    """The run of the tests: Adam with a step schedule, EarlyStopping (patience 1, best weights restored),
    WeightAverage, then ``interrupt``; resumed from ``checkpoint`` when given."""
    x, y = dataset()
    model = make_model() if model is None else model
    optimizer = make_optimizer("adam", model.parameters()) if optimizer is None else optimizer
    scheduler = make_scheduler("step", optimizer)
    stopper, average = callbacks.EarlyStopping(patience=1), WeightAverage()
    hooks = [callbacks.LearningRateScheduler(scheduler), stopper, average, *([interrupt] if interrupt else [])]
    history = model.fit(
        x, y, epochs=EPOCHS, batch_size=BATCH, optimizer=optimizer, callbacks=hooks, seed=7, verbose=0,
        augment=augment, validation_data=validation_data(), checkpoint=checkpoint, resume=checkpoint is not None,
    )  # fmt: skip
    return model, stopper, average, history


class Snapshots(callbacks.Callback):
    """Records the weights at every epoch end."""

    def __init__(self) -> None:
        self.states: list[dict] = []

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.states.append(self.model.state_dict())


@cache
def reference():
    """The uninterrupted run, and the weights at the end of each epoch."""
    snapshots = Snapshots()
    result = run(interrupt=snapshots)
    return result, snapshots.states


def assert_same_end(result, expected) -> None:
    (model, stopper, average, history), (ref_model, ref_stopper, ref_average, ref_history) = result, expected
    state, ref_state = model.state_dict(), ref_model.state_dict()
    assert list(state) == list(ref_state)
    for key, value in ref_state.items():
        assert state[key].dtype == value.dtype and np.array_equal(state[key], value), f"{key} differs after resume"
    assert (stopper.best, stopper.best_epoch, stopper.stopped_epoch, stopper.wait) == (
        ref_stopper.best, ref_stopper.best_epoch, ref_stopper.stopped_epoch, ref_stopper.wait)  # fmt: skip
    assert list(average.average) == list(ref_average.average)
    for key, value in ref_average.average.items():
        assert np.array_equal(average.average[key], value), f"the average of {key} differs after resume"
    for key in ("loss", "accuracy", "val_loss", "lr"):
        assert history[key] == ref_history[key], key


def test_the_reference_run_stops_early_and_restores_an_earlier_epoch():
    """Control: the best epoch is neither the first nor the last, so restoring it matters."""
    (model, stopper, _, history), states = reference()
    assert (stopper.best_epoch, stopper.stopped_epoch, len(history)) == (2, 4, 5)
    for key, value in model.state_dict().items():
        assert np.array_equal(value, states[2][key]), key
    assert any(not np.array_equal(value, states[4][key]) for key, value in model.state_dict().items())


INTERRUPTIONS = {
    # Raised at an epoch end, before that epoch's checkpoint: resume redoes the epoch.
    "before the best epoch (end of epoch 2)": [Interrupt("raise", epoch=1)],
    "after the best epoch (end of epoch 4)": [Interrupt("raise", epoch=3)],
    "SIGINT inside the epoch after the best": [Interrupt("sigint", epoch=3, batch=1)],
    "SIGINT in the best epoch": [Interrupt("sigint", epoch=2, batch=3)],
    "SIGINT in the epoch that stops the run": [Interrupt("sigint", epoch=4, batch=0)],
    "twice": [Interrupt("sigint", epoch=1, batch=2), Interrupt("raise", epoch=3)],
}


@pytest.mark.parametrize("case", list(INTERRUPTIONS), ids=list(INTERRUPTIONS))
def test_a_resumed_run_restores_the_same_best_weights(tmp_path, case):
    checkpoint = tmp_path / "run.npz"
    for interrupt in INTERRUPTIONS[case]:
        with pytest.raises(KeyboardInterrupt):
            run(checkpoint, interrupt)
    assert_same_end(run(checkpoint), reference()[0])


def test_resuming_a_run_that_stopped_early_trains_no_further(tmp_path):
    checkpoint = tmp_path / "stopped.npz"
    run(checkpoint)
    before = checkpoint.read_bytes()
    assert_same_end(run(checkpoint), reference()[0])
    assert checkpoint.read_bytes() == before


def test_the_checkpoint_holds_the_callbacks_arrays(tmp_path):
    checkpoint = tmp_path / "run.npz"
    with pytest.raises(KeyboardInterrupt):
        run(checkpoint, Interrupt("raise", epoch=3))
    meta, arrays = load_file(checkpoint)
    (model, *_), states = reference()
    assert meta["extra"]["callbacks"][1] == {
        "best": meta["extra"]["history"]["val_loss"][2],
        "best_epoch": 2,
        "wait": 0,
    }
    assert meta["extra"]["stop_training"] is False
    for key in model.state_dict():
        assert np.array_equal(arrays[f"extra/callbacks.1.{key}"], states[2][key]), key  # EarlyStopping's best
    for key, _ in model.named_parameters():
        assert arrays[f"extra/callbacks.2.{key}"].shape == model.state_dict()[key].shape  # WeightAverage's
    assert meta["format_version"] == 3


def test_best_weights_that_do_not_fit_the_model_are_refused_and_the_model_and_optimizer_are_left_alone(tmp_path):
    checkpoint = tmp_path / "run.npz"
    with pytest.raises(KeyboardInterrupt):
        run(checkpoint, Interrupt("raise", epoch=3))
    entries = read_entries(checkpoint)
    entries["extra/callbacks.1.0.weight"] = np.zeros((5, 1, 3, 3), np.float32)
    rewrite(checkpoint, entries, description(entries), fix_checksum=True)
    model = make_model()
    optimizer = make_optimizer("adam", model.parameters())
    before, optimizer_before = model.state_dict(), optimizer.state_dict()
    with pytest.raises(ValueError, match="EarlyStopping: the saved best weights do not fit the model"):
        run(checkpoint, model=model, optimizer=optimizer)
    for key, value in model.state_dict().items():
        assert np.array_equal(value, before[key]), key
    assert optimizer.state_dict() == optimizer_before  # the checkpoint's Adam state was loaded, then rolled back
