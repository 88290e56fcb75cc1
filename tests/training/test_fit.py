"""Sequential.fit / evaluate / predict on real data, History, callbacks and reproducibility."""

import numpy as np
import pytest

import convnp
from convnp.callbacks import Callback, EarlyStopping, LearningRateScheduler, ModelCheckpoint
from convnp.data import load
from convnp.models import convnet_bn, mnist_cnn
from convnp.optim import SGD, StepLR
from convnp.training import HISTORY_KEYS

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits():
    return load("digits")


def test_fit_on_digits_reaches_95_percent(digits):
    (x_train, y_train), (x_test, y_test) = digits
    model = mnist_cnn((1, 8, 8), seed=0)
    history = model.fit(x_train, y_train, epochs=6, batch_size=32, lr=2e-3, seed=0, verbose=0,
                        validation_data=(x_test, y_test))  # fmt: skip
    result = model.evaluate(x_test, y_test)
    assert result["accuracy"] >= 0.95
    assert history["val_accuracy"][-1] == pytest.approx(result["accuracy"])
    assert history["loss"][-1] < history["loss"][0]


def test_history_has_the_documented_keys_one_entry_per_epoch(digits):
    (x_train, y_train), (x_test, y_test) = digits
    model = mnist_cnn((1, 8, 8), seed=0)
    history = model.fit(x_train[:200], y_train[:200], epochs=3, batch_size=50, seed=0, verbose=0,
                        validation_data=(x_test[:50], y_test[:50]))  # fmt: skip
    expected = {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    assert set(history.history) == set(HISTORY_KEYS) == expected
    assert all(len(values) == 3 for values in history.history.values())
    assert all(isinstance(v, float) and v > 0 for v in history["seconds"])
    assert history["lr"] == [pytest.approx(1e-3)] * 3  # Adam's default


def test_the_same_seed_gives_bit_identical_weights(digits):
    (x_train, y_train), _ = digits
    states = []
    for _ in range(2):
        model = convnet_bn((1, 8, 8), seed=3, width=8)  # batch norm and dropout included
        model.fit(x_train[:256], y_train[:256], epochs=2, batch_size=32, seed=7, verbose=0)
        states.append(model.state_dict())
    for key in states[0]:
        np.testing.assert_array_equal(states[0][key], states[1][key], err_msg=key)
    other = convnet_bn((1, 8, 8), seed=3, width=8)
    other.fit(x_train[:256], y_train[:256], epochs=2, batch_size=32, seed=8, verbose=0)
    assert not np.array_equal(other.state_dict()["0.weight"], states[0]["0.weight"])


def test_dropout_and_batch_norm_train_only_inside_fit(digits):
    (x_train, y_train), (x_test, _) = digits
    model = convnet_bn((1, 8, 8), seed=0, width=8)
    model.fit(x_train[:64], y_train[:64], epochs=1, batch_size=32, seed=0, verbose=0)
    running = model.state_dict()["1.running_mean"].copy()
    first, second = model.predict(x_test[:20]), model.predict(x_test[:20])
    np.testing.assert_array_equal(first, second)  # no dropout outside fit
    np.testing.assert_array_equal(model.state_dict()["1.running_mean"], running)  # statistics frozen
    np.testing.assert_allclose(first.sum(axis=1), 1.0, rtol=1e-5)


def test_predict_and_evaluate_run_in_bounded_batches(digits):
    (_, _), (x_test, y_test) = digits
    model = mnist_cnn((1, 8, 8), seed=0)
    whole = model.predict(x_test, batch_size=1000)
    np.testing.assert_allclose(model.predict(x_test, batch_size=7), whole, rtol=1e-5, atol=1e-7)
    a, b = model.evaluate(x_test, y_test, batch_size=7), model.evaluate(x_test, y_test, batch_size=1000)
    assert a["accuracy"] == b["accuracy"] and a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_early_stopping_stops_and_restores_the_best_weights(digits):
    (x_train, y_train), (x_test, y_test) = digits

    class Worsen(Callback):
        """Pretend the validation loss gets worse after the first epoch."""

        def on_epoch_end(self, epoch, logs):
            logs["val_loss"] = 1.0 + epoch

    stopper = EarlyStopping(patience=1)
    keeper = Callback()
    snapshots = []
    keeper.on_epoch_end = lambda epoch, logs: snapshots.append(keeper.model.state_dict())
    model = mnist_cnn((1, 8, 8), seed=0)
    history = model.fit(x_train[:128], y_train[:128], epochs=10, batch_size=32, seed=0, verbose=0,
                        validation_data=(x_test[:32], y_test[:32]), callbacks=[Worsen(), keeper, stopper])  # fmt: skip
    assert len(history) == 3 and stopper.stopped_epoch == 2 and stopper.best_epoch == 0
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, snapshots[0][key])  # the weights of epoch 1
    assert stopper.state_dict() == {"best": 1.0, "best_epoch": 0, "wait": 2}


def test_model_checkpoint_keeps_the_best_model(tmp_path, digits):
    (x_train, y_train), (x_test, y_test) = digits
    checkpoint = ModelCheckpoint(tmp_path / "best-{epoch}.npz", monitor="val_accuracy")
    model = mnist_cnn((1, 8, 8), seed=0)
    history = model.fit(x_train[:300], y_train[:300], epochs=3, batch_size=32, seed=0, verbose=0,
                        validation_data=(x_test, y_test), callbacks=[checkpoint])  # fmt: skip
    assert checkpoint.saved_paths and checkpoint.best == max(history["val_accuracy"])
    best = convnp.load(checkpoint.saved_paths[-1])
    assert best.evaluate(x_test, y_test)["accuracy"] == pytest.approx(checkpoint.best)


def test_learning_rate_scheduler_steps_per_epoch(digits):
    (x_train, y_train), _ = digits
    model = mnist_cnn((1, 8, 8), seed=0)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = LearningRateScheduler(StepLR(optimizer, step_size=2, gamma=0.5))
    history = model.fit(x_train[:64], y_train[:64], epochs=4, batch_size=32, optimizer=optimizer, seed=0,
                        verbose=0, callbacks=[scheduler])  # fmt: skip
    assert history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05])
    assert optimizer.lr == pytest.approx(0.025)


def test_a_seed_also_fixes_the_dropout_inside_a_block():
    """fit seeds every Dropout layer, those held by a block (Residual) too: two runs are identical."""

    def run():
        rng = np.random.default_rng(0)
        x, y = rng.random((24, 1, 6, 6)), rng.integers(0, 2, 24)
        body = [convnp.nn.Conv2D(1, 3, padding=1), convnp.nn.Dropout(0.5)]
        layers = [convnp.nn.Residual(body), convnp.nn.Flatten(), convnp.nn.Dense(2)]
        model = convnp.nn.Sequential(layers, input_shape=(1, 6, 6), dtype="float64", seed=0)
        model.fit(x, y, epochs=2, batch_size=8, seed=3, verbose=0)
        return model.state_dict()

    first, second = run(), run()
    assert all(np.array_equal(first[key], second[key]) for key in first)
