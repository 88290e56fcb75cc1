"""Sequential.train_pass: a batch cut into shards gives the gradients of the whole batch."""

import math

import numpy as np
import pytest

from convnp.backend import threads
from convnp.functional.losses import softmax_cross_entropy
from convnp.nn import (
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GroupNorm,
    MaxPool2D,
    ReLU,
    Sequential,
    Softmax,
)
from convnp.nn.layer import Layer


@pytest.fixture
def shards(monkeypatch):
    """Set the shard count; every model is big enough to be split."""
    saved = threads.get_num_threads()
    monkeypatch.setattr(threads, "MIN_ELEMENTS", 0)
    yield threads.set_num_threads
    threads.set_num_threads(saved)


def small_cnn(**conv_options):
    layers = [Conv2D(4, 3, padding=1, **conv_options), ReLU(), MaxPool2D(2), GroupNorm(2),
              Flatten(), Dense(6, activation="tanh"), Dense(3)]  # fmt: skip
    return Sequential(layers, input_shape=(2, 8, 7), dtype="float64", seed=0)


def batch(size=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((size, 2, 8, 7)), rng.integers(0, 3, size)


def textbook_pass(model, x, y, stop=None):
    """Forward over the whole batch, the loss, backward: the reference."""
    outputs = model.forward_layers(x, training=True, stop=stop)
    loss, dlogits = softmax_cross_entropy(outputs, y)
    model.backward(dlogits, input_grad=False, stop=stop)
    return loss, outputs, {name: p.grad.copy() for name, p in model.named_parameters()}


def sharded_pass(model, x, y, stop=None):
    model.zero_grad()
    loss, outputs = model.train_pass(x, y, softmax_cross_entropy, stop=stop)
    return loss, outputs, {name: p.grad.copy() for name, p in model.named_parameters()}


def assert_same_pass(actual, expected, rtol=1e-12):
    assert actual[0] == pytest.approx(expected[0], rel=rtol)
    np.testing.assert_allclose(actual[1], expected[1], rtol=rtol, atol=rtol)
    assert actual[2].keys() == expected[2].keys()
    for name in expected[2]:
        np.testing.assert_allclose(actual[2][name], expected[2][name], rtol=rtol, atol=rtol, err_msg=name)


@pytest.mark.parametrize("count", [1, 2, 3])  # 3 shards of a 7-sample batch are uneven
@pytest.mark.parametrize("size", [7, 1])
def test_shards_give_the_gradients_of_the_whole_batch(shards, count, size):
    model = small_cnn()
    x, y = batch(size)
    expected = textbook_pass(model, x, y)
    shards(count)
    assert_same_pass(sharded_pass(model, x, y), expected)


def test_the_shards_run_on_copies_and_leave_the_layers_untouched(shards):
    model = small_cnn()
    x, y = batch()
    shards(2)
    model.train_pass(x, y, softmax_cross_entropy)
    assert all(layer.cache is None for layer in model.layers)  # every shard used a shard_copy
    assert all(param.grad is not None for param in model.parameters())


def test_a_fused_activation_and_a_stop_before_a_final_softmax(shards):
    layers = [Conv2D(3, 3, activation="relu"), MaxPool2D(2), Flatten(), Dense(3), Softmax()]
    model = Sequential(layers, input_shape=(2, 8, 7), dtype="float64", seed=1)
    x, y = batch(9, seed=1)
    expected = textbook_pass(model, x, y, stop=-1)
    shards(2)
    assert_same_pass(sharded_pass(model, x, y, stop=-1), expected)


@pytest.mark.parametrize("network", ["independent", "batch_norm"])
def test_float32_shards_agree_with_the_whole_batch(shards, network):
    model = (small_cnn() if network == "independent" else coupled_cnn(dropout_p=0.0)).astype("float32")
    x, y = batch(16)
    x = x.astype(np.float32)
    expected = textbook_pass(model, x, y)
    shards(2)
    assert_same_pass(sharded_pass(model, x, y), expected, rtol=1e-5)


def test_sharded_passes_are_reproducible(shards):
    model = small_cnn()
    x, y = batch(16)
    shards(2)
    first, second = sharded_pass(model, x, y), sharded_pass(model, x, y)
    assert first[0] == second[0]
    for name in first[2]:
        np.testing.assert_array_equal(first[2][name], second[2][name])


def coupled_cnn(dropout_p=0.3):
    """Batch norm (2-D and 1-D) and dropout: layers that need the whole batch."""
    layers = [Conv2D(4, 3, padding=1), BatchNorm2D(), ReLU(), MaxPool2D(2), Dropout(dropout_p, rng=5), Flatten(),
              Dense(6, use_bias=False), BatchNorm1D(), ReLU(), Dropout(dropout_p, rng=6), Dense(3)]  # fmt: skip
    return Sequential(layers, input_shape=(2, 8, 7), dtype="float64", seed=0)


@pytest.mark.parametrize("count", [2, 3])  # 3 shards of 8 samples are uneven
def test_batch_norm_and_dropout_exchange_across_shards(shards, count):
    """Whole-batch statistics, one mask draw for the whole batch, running statistics moved once."""
    x, y = batch(8)
    reference = coupled_cnn()
    expected = textbook_pass(reference, x, y)
    model = coupled_cnn()
    shards(count)
    assert_same_pass(sharded_pass(model, x, y), expected)
    assert all(layer.cache is None and layer.shard is None for layer in model.layers)  # the shards ran on copies
    for key, value in reference.state_dict().items():  # running statistics included
        np.testing.assert_allclose(model.state_dict()[key], value, rtol=1e-13, atol=1e-15, err_msg=key)
    # Both dropout generators advanced by exactly one whole-batch draw.
    for index in (4, 9):
        assert model.layers[index].rng.random() == reference.layers[index].rng.random()


class BatchMean(Layer):
    """Subtracts the batch mean: needs the whole batch and cannot exchange (not shard-aware)."""

    batch_independent = False

    def _build(self, input_shape, rng):
        return input_shape

    def forward(self, x, training=False):
        self.cache = True
        return x - x.mean(axis=0)

    def backward(self, dout):
        return dout - dout.mean(axis=0)


def test_a_layer_that_cannot_exchange_runs_the_whole_batch(shards):
    def build():
        return Sequential([Conv2D(4, 3, padding=1), BatchMean(), ReLU(), Flatten(), Dense(3)],
                          input_shape=(2, 8, 7), dtype="float64", seed=0)  # fmt: skip

    x, y = batch(8)
    shards(2)  # before the reference too: its ops then cut the batch as the fallback's do, whatever the default
    expected = textbook_pass(build(), x, y)
    model = build()
    assert_same_pass(sharded_pass(model, x, y), expected, rtol=0)
    assert model.layers[1].cache is True  # the model's own layers ran, on the whole batch


def test_a_pass_too_small_for_its_exchanges_runs_the_whole_batch(shards, monkeypatch):
    """Between two meetings of the shards there must be at least MIN_ELEMENTS of work."""
    x, y = batch(8)
    model = coupled_cnn()
    plan_work = sum(math.prod(layer.output_shape) for layer in model.layers) * len(x)
    exchanges = 4  # two batch norms, two dropouts
    shards(2)
    monkeypatch.setattr(threads, "MIN_ELEMENTS", plan_work // (exchanges + 1) + 1)
    expected = textbook_pass(coupled_cnn(), x, y)
    assert_same_pass(sharded_pass(model, x, y), expected, rtol=0)
    assert model.layers[1].cache is not None  # the model's own layers ran, on the whole batch
    monkeypatch.setattr(threads, "MIN_ELEMENTS", plan_work // (exchanges + 1))
    model = coupled_cnn()
    sharded_pass(model, x, y)
    assert model.layers[1].cache is None  # shards, on copies


def test_a_non_finite_loss_in_one_shard_stops_every_shard(shards):
    """The shards agree before the backward pass, whose batch-norm exchanges need them all."""
    model = coupled_cnn()
    x, y = batch(8)
    y[:] = 0
    y[6] = 1  # only in the second shard

    def loss_fn(outputs, targets):
        loss, dlogits = softmax_cross_entropy(outputs, targets)
        return (float("inf") if (targets == 1).any() else loss), dlogits

    shards(2)
    loss, _ = model.train_pass(x, y, loss_fn)
    assert not np.isfinite(loss)
    assert all(param.grad is None for param in model.parameters())


@pytest.mark.parametrize("failing_shard", [0, 1])
def test_an_error_in_one_shard_is_raised_and_frees_the_others(shards, failing_shard):
    model = coupled_cnn()
    x, y = batch(8)
    y[:] = 0
    y[2 if failing_shard == 0 else 6] = 1

    def loss_fn(outputs, targets):
        if (targets == 1).any():
            raise RuntimeError("a loss that fails")
        return softmax_cross_entropy(outputs, targets)

    shards(2)
    with pytest.raises(RuntimeError, match="a loss that fails"):
        model.train_pass(x, y, loss_fn)
    # Nothing is left waiting: the next pass runs normally.
    loss, _ = model.train_pass(x, np.zeros(8, dtype=np.int64), softmax_cross_entropy)
    assert np.isfinite(loss)


def test_no_gradient_is_stored_when_the_loss_is_not_finite(shards):
    model = small_cnn()
    x, y = batch()
    x[3] = np.nan
    shards(2)
    loss, _ = model.train_pass(x, y, softmax_cross_entropy)
    assert not np.isfinite(loss)
    assert all(param.grad is None for param in model.parameters())


def test_shard_copy_shares_weights_and_owns_cache_and_gradients():
    layer = Conv2D(3, 3, activation="relu")
    layer.build((2, 5, 5), dtype="float64", rng=0)
    twin = layer.shard_copy()
    assert twin.weight is not layer.weight and twin.weight.data is layer.weight.data
    assert twin.bias.data is layer.bias.data
    assert twin.activation is not layer.activation
    twin.forward(np.ones((1, 2, 5, 5)), training=True)
    twin.backward(np.ones((1, 3, 3, 3)))
    assert layer.cache is None and layer.activation.cache is None
    assert layer.weight.grad is None and twin.weight.grad is not None


@pytest.mark.parametrize("count", [1, 2, 3])
def test_inference_in_shards_equals_the_whole_batch(shards, count):
    layers = [Conv2D(4, 3, padding=1), BatchNorm2D(), ReLU(), MaxPool2D(2), Dropout(0.5, rng=0),
              Flatten(), Dense(3)]  # fmt: skip
    model = Sequential(layers, input_shape=(2, 8, 7), dtype="float64", seed=0)
    model.layers[1].running_mean = np.linspace(-1, 1, 4)  # inference uses the running statistics
    x, _ = batch(7)
    expected = model.forward_layers(x, training=False)
    shards(count)
    for layer in model.layers:
        layer.cache = None
    actual = model.forward_layers(x, training=False, keep_caches=False)
    np.testing.assert_allclose(actual, expected, rtol=1e-13, atol=1e-13)
    assert all(layer.cache is None for layer in model.layers)  # the shards ran on copies
    np.testing.assert_allclose(model.predict(x), model.predict(x, batch_size=2), rtol=1e-12)
