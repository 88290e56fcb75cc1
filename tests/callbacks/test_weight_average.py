"""ExponentialMovingAverage: the average it keeps, what fit validates and returns, and resume."""

from __future__ import annotations

import numpy as np
import pytest

from convnp import callbacks
from convnp.training import evaluate
from tests.training.test_resume import BATCH, BATCHES, Interrupt, augment, dataset, make_model, make_optimizer


class Recorder(callbacks.Callback):
    """The training weights at the start, after every batch and at every epoch end."""

    def __init__(self) -> None:
        self.after_batches: list[dict] = []
        self.epoch_ends: list[dict] = []

    def on_train_begin(self) -> None:
        self.start = self.model.state_dict()

    def on_batch_end(self, batch: int, loss: float) -> None:
        self.after_batches.append(self.model.state_dict())

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.epoch_ends.append(self.model.state_dict())


class AverageAtEpochEnd(callbacks.Callback):
    def __init__(self, average: callbacks.ExponentialMovingAverage) -> None:
        self.average, self.states = average, []

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.states.append({key: value.copy() for key, value in self.average.average.items()})


def fit(epochs=3, dtype="float64", extra=(), checkpoint=None, average=True, **ema_options):
    """test_resume's run (float64 by default, SGD) with a Recorder and an ExponentialMovingAverage."""
    x, y = dataset(dtype)
    model = make_model(dtype)
    recorder = Recorder()
    # a fit checkpoint keeps callback states by position: the interruption comes last
    ema = callbacks.ExponentialMovingAverage(**ema_options) if average else None
    hooks = [recorder, *([ema] if average else []), *extra]
    model.fit(
        x, y, epochs=epochs, batch_size=BATCH, optimizer=make_optimizer("sgd", model.parameters()), seed=7,
        verbose=0, augment=augment, callbacks=hooks, validation_data=(x[:16], y[:16]),
        checkpoint=checkpoint, resume=checkpoint is not None,
    )  # fmt: skip
    return model, recorder, ema


def expected_average(recorder: Recorder, decay: float, warmup: bool) -> dict:
    average = {key: value.copy() for key, value in recorder.start.items()}
    for n, state in enumerate(recorder.after_batches, start=1):
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay
        average = {key: d * average[key] + (1 - d) * state[key] for key in average}
    return average


@pytest.mark.parametrize(("decay", "warmup"), [(0.9, True), (0.99, True), (0.7, False), (0.0, False)])
def test_the_model_ends_with_the_average_of_every_weight_and_buffer(decay, warmup):
    model, recorder, ema = fit(decay=decay, warmup=warmup)
    assert ema.updates == len(recorder.after_batches) == 3 * BATCHES
    expected = expected_average(recorder, decay, warmup)
    state = model.state_dict()
    assert list(state) == list(expected) and any("running_var" in key for key in state)
    for key, value in expected.items():
        np.testing.assert_allclose(state[key], value, rtol=1e-12, atol=1e-14, err_msg=key)
    if decay:  # the average differs from the last training weights
        assert any(not np.allclose(state[k], recorder.after_batches[-1][k]) for k in state)
    else:  # decay 0 keeps only the last weights
        for key, value in recorder.after_batches[-1].items():
            np.testing.assert_array_equal(state[key], value)


def test_the_warmup_weights_early_steps_more():
    ema = callbacks.ExponentialMovingAverage(decay=0.999)
    assert ema.current_decay() == pytest.approx(2 / 11)  # the first update keeps 2/11 of the start
    ema.updates = 10_000
    assert ema.current_decay() == 0.999
    assert callbacks.ExponentialMovingAverage(decay=0.5, warmup=False).current_decay() == 0.5


def test_training_goes_on_from_its_own_weights_after_each_validation():
    _, recorder, _ = fit(decay=0.8)
    _, plain, _ = fit(average=False)
    for mine, theirs in zip(recorder.after_batches, plain.after_batches, strict=True):
        for key, value in theirs.items():
            np.testing.assert_array_equal(mine[key], value, err_msg=key)


def test_each_epoch_validates_the_average_of_that_epoch():
    x, y = dataset("float64")
    ema = callbacks.ExponentialMovingAverage(decay=0.8)
    snapshots = AverageAtEpochEnd(ema)
    model = make_model("float64")
    recorder = Recorder()
    history = model.fit(
        x, y, epochs=3, batch_size=BATCH, optimizer=make_optimizer("sgd", model.parameters()), seed=7, verbose=0,
        augment=augment, callbacks=[recorder, ema, snapshots], validation_data=(x[:16], y[:16]),
    )  # fmt: skip
    probe = make_model("float64")
    for epoch, (average, training) in enumerate(zip(snapshots.states, recorder.epoch_ends, strict=True)):
        probe.load_state_dict(average)
        result = evaluate(probe, x[:16], y[:16])
        assert history["val_loss"][epoch] == pytest.approx(result["loss"], rel=1e-12)
        probe.load_state_dict(training)
        assert evaluate(probe, x[:16], y[:16])["loss"] != pytest.approx(result["loss"], rel=1e-6)


def test_an_interrupted_and_resumed_run_averages_as_an_uninterrupted_one(tmp_path):
    reference, _, reference_ema = fit(epochs=4, dtype="float32", decay=0.9)
    checkpoint = tmp_path / "run.npz"
    with pytest.raises(KeyboardInterrupt):
        fit(epochs=4, dtype="float32", extra=[Interrupt("sigint", epoch=2, batch=1)], checkpoint=checkpoint, decay=0.9)
    model, _, ema = fit(epochs=4, dtype="float32", checkpoint=checkpoint, decay=0.9)
    assert ema.updates == reference_ema.updates == 4 * BATCHES
    for key, value in reference.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[key], value, err_msg=key)


@pytest.mark.parametrize("decay", [1.0, -0.1, True, "0.9", None])
def test_bad_decay(decay):
    with pytest.raises(ValueError, match=r"ExponentialMovingAverage: decay must be a number in \[0, 1\)"):
        callbacks.ExponentialMovingAverage(decay=decay)


def test_a_saved_average_that_does_not_fit_the_model_is_refused():
    model, _, ema = fit(epochs=1, decay=0.9)
    arrays = ema.state_arrays()
    arrays["0.weight"] = np.zeros((5, 1, 3, 3))
    with pytest.raises(ValueError, match="ExponentialMovingAverage: the saved average does not fit the model"):
        ema.load_state_arrays(arrays)
