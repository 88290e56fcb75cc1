"""Numerics: stable softmax / log-softmax / sigmoid / cross-entropy for extreme logits,
batch norm on constant channels, gradient clipping in fit, and the NaN stop.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import convnp
from convnp import callbacks, nn, optim
from convnp import functional as F
from convnp.serialization import load_file
from convnp.training import TrainingDivergedError

DTYPES = [np.float32, np.float64]
BIG = 1e4


def close(dtype) -> dict:
    """Tolerance of a few units in the last place of ``dtype``."""
    return {"rtol": 4 * np.finfo(dtype).eps, "atol": 0.0}


# ---------------------------------------------------------------- softmax etc.
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_of_extreme_logits_is_exact(dtype):
    logits = np.array([[BIG, -BIG, 0.0], [-BIG, -BIG, -BIG], [BIG, BIG, -BIG], [0.0, -BIG, BIG]], dtype=dtype)
    out, cache = F.softmax_forward(logits)
    assert out.dtype == dtype
    expected = np.array([[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0], [0, 0, 1]])
    np.testing.assert_allclose(out, expected, **close(dtype))
    assert np.array_equal(out[[0, 2, 3]], expected[[0, 2, 3]].astype(dtype))  # exactly
    dx = F.softmax_backward(np.arange(12, dtype=dtype).reshape(4, 3), cache)
    assert dx.dtype == dtype and np.all(np.isfinite(dx))


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_softmax_of_extreme_logits_is_exact(dtype):
    logits = np.array([[BIG, -BIG, 0.0], [-BIG, -BIG, -BIG], [BIG, BIG, -BIG]], dtype=dtype)
    out = F.log_softmax(logits)
    assert out.dtype == dtype
    log2, log3 = math.log(2), math.log(3)
    expected = np.array([[0, -2 * BIG, -BIG], [-log3, -log3, -log3], [-log2, -log2, -2 * BIG - log2]])
    np.testing.assert_allclose(out, expected, **close(dtype))
    assert out[0, 0] == 0 and out[0, 1] == -2 * BIG and out[0, 2] == -BIG


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_of_extreme_inputs_is_exact_and_warning_free(dtype):
    x = np.array([BIG, -BIG, 0.0, 30.0, -30.0, 700.0, -700.0], dtype=dtype)
    with np.errstate(all="raise"):  # no overflow anywhere, not even in a discarded branch
        out, cache = F.sigmoid_forward(x)
        dx = F.sigmoid_backward(np.ones_like(x), cache)
    expected = [1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v)) for v in x.astype(float)]
    np.testing.assert_allclose(out, expected, rtol=4 * np.finfo(dtype).eps, atol=np.finfo(dtype).tiny)
    assert out[0] == 1 and out[1] == 0 and out[2] == 0.5
    assert out.dtype == dtype and np.all(np.isfinite(dx)) and dx[0] == 0 and dx[1] == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_other_activations_stay_finite_for_extreme_inputs(dtype):
    x = np.array([BIG, -BIG, 0.0], dtype=dtype)
    assert np.array_equal(F.tanh_forward(x)[0], np.array([1, -1, 0], dtype=dtype))
    assert np.array_equal(F.elu_forward(x)[0], np.array([BIG, -1, 0], dtype=dtype))
    assert np.array_equal(F.gaussian_forward(x)[0], np.array([0, 0, 1], dtype=dtype))
    for forward, backward in [(F.elu_forward, F.elu_backward), (F.gaussian_forward, F.gaussian_backward)]:
        out, cache = forward(x)
        assert np.all(np.isfinite(backward(np.ones_like(x), cache)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_of_extreme_logits_is_exact(dtype):
    logits = np.array([[BIG, -BIG], [BIG, -BIG], [-BIG, BIG], [0.0, 0.0]], dtype=dtype)
    labels = np.array([1, 0, 0, 1])
    loss, dlogits = F.softmax_cross_entropy(logits, labels)
    # Per row: 2e4 (the wrong class at full confidence), 0, 2e4, log 2.
    assert loss == pytest.approx((2 * BIG + 0 + 2 * BIG + math.log(2)) / 4, rel=1e-12)
    expected_grad = np.array([[1, -1], [0, 0], [-1, 1], [0.5, -0.5]]) / 4
    assert dlogits.dtype == dtype
    assert np.array_equal(dlogits, expected_grad.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_with_label_smoothing_of_extreme_logits(dtype):
    smoothing = 0.1
    logits = np.array([[BIG, -BIG]], dtype=dtype)
    loss, dlogits = F.softmax_cross_entropy(logits, np.array([1]), label_smoothing=smoothing)
    # q = [s/2, 1 - s/2], log p = [0, -2e4]: loss = (1 - s/2) * 2e4.
    assert loss == pytest.approx((1 - smoothing / 2) * 2 * BIG, rel=1e-6)
    np.testing.assert_allclose(dlogits, [[1 - smoothing / 2, -(1 - smoothing / 2)]], **close(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_of_many_large_logits_matches_the_analytic_value(dtype):
    rng = np.random.default_rng(0)
    logits = rng.choice([-BIG, BIG, 0.0], size=(64, 10)).astype(dtype)
    labels = rng.integers(0, 10, 64)
    loss, dlogits = F.softmax_cross_entropy(logits, labels)
    # loss_n = max_n - x[n, label] + log(number of entries equal to the max)
    top = logits.max(axis=1).astype(float)
    ties = (logits == logits.max(axis=1, keepdims=True)).sum(axis=1)
    expected = np.mean(top - logits[np.arange(64), labels].astype(float) + np.log(ties))
    assert loss == pytest.approx(expected, rel=1e-6)
    assert np.all(np.isfinite(dlogits)) and dlogits.dtype == dtype
    np.testing.assert_allclose(dlogits.sum(axis=1), 0, atol=1e-6)


# ---------------------------------------------------------------- batch norm
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5, 5)], ids=["1d", "2d"])
def test_batch_norm_on_a_constant_channel_gives_no_nan(dtype, shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(dtype)
    x[:, 1] = 3.0  # one constant channel
    weight = np.array([1.0, 2.0, 0.5], dtype=dtype)
    bias = np.array([0.1, 0.25, -0.3], dtype=dtype)
    running_mean, running_var = np.zeros(3, dtype), np.ones(3, dtype)
    with np.errstate(all="raise"):
        out, cache = F.batch_norm_forward(x, weight, bias, running_mean, running_var, training=True)
        dout = rng.normal(size=shape).astype(dtype)
        dx, dweight, dbias = F.batch_norm_backward(dout, cache)
    assert np.array_equal(out[:, 1], np.full(out[:, 1].shape, bias[1]))  # x_hat = 0 exactly
    for array in (out, dx, dweight, dbias, running_mean, running_var):
        assert np.all(np.isfinite(array)) and array.dtype == dtype
    assert dweight[1] == 0
    # The constant channel's input gradient is dout * weight / sqrt(eps), centred.
    inv_std = 1 / np.sqrt(dtype(1e-5))
    channel_dout = dout[:, 1] * weight[1]
    np.testing.assert_allclose(dx[:, 1], inv_std * (channel_dout - channel_dout.mean()), rtol=1e-4, atol=1e-4)
    assert running_mean[1] == pytest.approx(0.3) and running_var[1] == pytest.approx(0.9)
    # Inference with the running statistics, also when a running variance is exactly 0.
    running_var[1] = 0.0
    with np.errstate(all="raise"):
        out, cache = F.batch_norm_forward(x, weight, bias, running_mean, running_var, training=False)
        dx, _, _ = F.batch_norm_backward(dout, cache)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(dx))


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_on_an_entirely_constant_batch(dtype):
    x = np.full((2, 4, 3, 3), 7.0, dtype=dtype)
    layer = nn.BatchNorm2D()
    layer.build(x.shape[1:], dtype=dtype)
    with np.errstate(all="raise"):
        out = layer.forward(x, training=True)
        dx = layer.backward(np.ones_like(x))
        out_eval = layer.forward(x, training=False)
    assert np.array_equal(out, np.zeros_like(x))
    assert np.all(np.isfinite(dx)) and np.all(np.isfinite(out_eval))


@pytest.mark.parametrize("dtype", DTYPES)
def test_group_and_layer_norm_on_constant_samples(dtype):
    x = np.full((2, 4, 3, 3), -2.5, dtype=dtype)
    for layer in (nn.GroupNorm(2), nn.LayerNorm()):
        layer.build(x.shape[1:], dtype=dtype)
        with np.errstate(all="raise"):
            out = layer.forward(x, training=True)
            dx = layer.backward(np.ones_like(x))
        assert np.array_equal(out, np.zeros_like(x)) and np.all(np.isfinite(dx))


def test_training_a_batch_norm_model_on_constant_images_stays_finite():
    model = convnp.Sequential(
        [nn.Conv2D(4, 3), nn.BatchNorm2D(), nn.ReLU(), nn.Flatten(), nn.Dense(8), nn.BatchNorm1D(), nn.Dense(2)],
        input_shape=(1, 5, 5),
        seed=0,
    )
    x = np.ones((16, 1, 5, 5), np.float32)  # every channel of the conv output is constant
    y = np.arange(16) % 2
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, seed=0)
    assert all(math.isfinite(value) for value in history["loss"])
    assert np.all(np.isfinite(model.predict(x)))
    for param in model.parameters():
        assert np.all(np.isfinite(param.data))


# ------------------------------------------------------------ clipping in fit
def linear_model() -> convnp.Sequential:
    return convnp.Sequential([nn.Flatten(), nn.Dense(8), nn.Dense(4)], input_shape=(1, 6, 6), seed=1)


def toy_data(n: int = 32):
    rng = np.random.default_rng(0)
    return rng.random((n, 1, 6, 6)).astype(np.float32), rng.integers(0, 4, n)


def gradient_of(model, x, y) -> list[np.ndarray]:
    outputs = model.forward(x, training=True)
    _, dlogits = F.softmax_cross_entropy(outputs, y)
    model.backward(dlogits)
    return [param.grad.astype(np.float64) for param in model.parameters()]


def global_norm(arrays) -> float:
    return math.sqrt(sum(float(np.sum(np.square(a.astype(np.float64)))) for a in arrays))


@pytest.mark.parametrize("max_norm", [0.05, 0.5, 1e6])
def test_clip_norm_bounds_the_applied_update(max_norm):
    """With SGD (lr 1, no momentum) and one full batch, the update is minus the clipped gradient."""
    x, y = toy_data()
    model = linear_model()
    grads = gradient_of(linear_model(), x, y)
    grad_norm = global_norm(grads)
    before = [p.data.astype(np.float64) for p in model.parameters()]
    model.fit(x, y, epochs=1, batch_size=len(x), optimizer=optim.SGD(model.parameters(), lr=1.0),
              clip_norm=max_norm, shuffle=False, verbose=0)  # fmt: skip
    updates = [p.data.astype(np.float64) - b for p, b in zip(model.parameters(), before)]
    scale = min(1.0, max_norm / (grad_norm + 1e-6))
    assert global_norm(updates) == pytest.approx(min(grad_norm, max_norm), rel=1e-4)
    for update, grad in zip(updates, grads):
        np.testing.assert_allclose(update, -scale * grad, rtol=1e-3, atol=1e-6)
    if max_norm < grad_norm:
        assert global_norm(updates) <= max_norm * (1 + 1e-5)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_huge_learning_rate_diverges_without_clipping_and_stays_finite_with_it():
    x, y = toy_data()
    model = linear_model()
    with pytest.raises(TrainingDivergedError):
        model.fit(x, y, epochs=5, batch_size=8, optimizer="sgd", lr=100.0, seed=0, verbose=0)
    model = linear_model()
    history = model.fit(x, y, epochs=5, batch_size=8, optimizer="sgd", lr=100.0, clip_norm=1.0, seed=0, verbose=0)
    assert all(math.isfinite(value) for value in history["loss"])
    assert all(np.all(np.isfinite(p.data)) for p in model.parameters())


# --------------------------------------------------------------- the NaN stop
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize(("loss", "value"), [("cross_entropy", "nan"), ("mse", "inf")])
def test_a_diverging_loss_raises_naming_epoch_and_batch(loss, value):
    x, y = toy_data()
    model = linear_model()
    with pytest.raises(TrainingDivergedError) as info:
        model.fit(x, y, epochs=5, batch_size=8, optimizer="sgd", lr=1e10, loss=loss, seed=0, verbose=0)
    error = info.value
    assert isinstance(error, FloatingPointError)
    assert error.epoch == 1 and error.batch in (2, 3)
    assert f"the loss became {value} at epoch 1, batch {error.batch}" in str(error)
    assert "lower learning rate" in str(error) and "checkpoint" not in str(error)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_in_the_data_raises_naming_the_batch_and_the_cause(tmp_path):
    x, y = toy_data()
    x[20, 0, 3, 3] = np.nan  # in the third batch of 8 without shuffling
    checkpoint = tmp_path / "never-written.npz"
    with pytest.raises(TrainingDivergedError, match="epoch 1, batch 3 .this batch's input holds NaN") as info:
        linear_model().fit(x, y, epochs=2, batch_size=8, shuffle=False, checkpoint=checkpoint, verbose=0)
    assert (info.value.epoch, info.value.batch) == (1, 3)
    assert not checkpoint.exists()  # no good epoch, nothing written


class Snapshots(callbacks.Callback):
    def __init__(self) -> None:
        self.states: list[dict] = []

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self.states.append(self.model.state_dict())


class RaiseLearningRate(callbacks.Callback):
    """From ``epoch`` on, a learning rate that makes the run diverge."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_begin(self, epoch: int) -> None:
        if epoch == self.epoch:
            self.optimizer.lr = 1e10


class PoisonWeights(callbacks.Callback):
    """Sets a weight to NaN after the last batch of ``epoch`` (the loss stays finite)."""

    def __init__(self, epoch: int, last_batch: int) -> None:
        self.epoch, self.last_batch, self.current = epoch, last_batch, None

    def on_epoch_begin(self, epoch: int) -> None:
        self.current = epoch

    def on_batch_end(self, batch: int, loss: float) -> None:
        if (self.current, batch) == (self.epoch, self.last_batch):
            self.model[1].weight.data[0, 0] = np.nan


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_keeps_the_last_good_checkpoint(tmp_path):
    x, y = toy_data()
    checkpoint = tmp_path / "good.npz"
    snapshots = Snapshots()
    model = linear_model()
    with pytest.raises(TrainingDivergedError, match="the last checkpoint, .*good.npz, is intact") as info:
        model.fit(x, y, epochs=6, batch_size=8, optimizer="sgd", lr=0.01, callbacks=[snapshots, RaiseLearningRate(2)],
                  checkpoint=checkpoint, seed=0, verbose=0)  # fmt: skip
    assert info.value.epoch == 3
    meta, _ = load_file(checkpoint)
    assert meta["extra"]["epoch"] == 2
    restored = convnp.load(checkpoint)
    for key, value in restored.state_dict().items():
        assert np.array_equal(value, snapshots.states[1][key]), key  # the state after epoch 2
        assert np.all(np.isfinite(value))


def test_non_finite_parameters_are_never_checkpointed(tmp_path):
    x, y = toy_data()
    checkpoint = tmp_path / "good.npz"
    snapshots = Snapshots()
    with pytest.raises(TrainingDivergedError, match="parameters became NaN or infinite during epoch 2") as info:
        linear_model().fit(x, y, epochs=4, batch_size=8, callbacks=[snapshots, PoisonWeights(1, 3)],
                           checkpoint=checkpoint, seed=0, verbose=0)  # fmt: skip
    assert (info.value.epoch, info.value.batch) == (2, None)
    meta, arrays = load_file(checkpoint)
    assert meta["extra"]["epoch"] == 1
    assert np.array_equal(arrays["model/1.weight"], snapshots.states[0]["1.weight"])
