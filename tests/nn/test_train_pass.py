"""Sequential.train_pass: a batch cut into shards gives the gradients of the whole batch."""

import numpy as np
import pytest

from convnp.functional import threads
from convnp.functional.losses import softmax_cross_entropy
from convnp.nn import (
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


def test_float32_shards_agree_with_the_whole_batch(shards):
    model = small_cnn().astype("float32")
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


@pytest.mark.parametrize("coupling", [BatchNorm2D, lambda: Dropout(0.3, rng=0)], ids=["batch_norm", "dropout"])
def test_batch_norm_and_dropout_models_run_the_whole_batch(shards, coupling):
    """Batch statistics and one random stream need the whole batch: no shards, identical results."""
    def build():
        layers = [Conv2D(4, 3, padding=1), coupling(), ReLU(), Flatten(), Dense(3)]
        return Sequential(layers, input_shape=(2, 8, 7), dtype="float64", seed=0)

    x, y = batch(8)
    shards(2)
    reference = build()
    expected = textbook_pass(reference, x, y)
    model = build()
    assert_same_pass(sharded_pass(model, x, y), expected, rtol=0)
    assert model.layers[0].cache is not None  # the model's own layers ran
    for key, value in reference.state_dict().items():  # running statistics included
        np.testing.assert_array_equal(model.state_dict()[key], value)


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
