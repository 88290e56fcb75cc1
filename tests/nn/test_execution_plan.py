"""Sequential runs ReLU after the max pooling that follows it: the same values and gradients."""

import numpy as np
import pytest

from convnp.nn import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sequential, Tanh


def layer_by_layer(model, x, dout):
    """The textbook order: every layer's forward, then every backward, one by one."""
    out = x
    for layer in model.layers:
        out = layer.forward(out, training=True)
    grad = dout
    for layer in reversed(model.layers):
        grad = layer.backward(grad)
    return out, grad, {name: p.grad.copy() for name, p in model.named_parameters()}


@pytest.mark.parametrize("pool", [MaxPool2D(2), MaxPool2D(3, stride=1, padding=1), MaxPool2D((2, 3), stride=(1, 2))])
@pytest.mark.parametrize("values", ["random", "ties"])
def test_relu_then_max_pool_runs_pooled_first_with_identical_results(pool, values):
    model = Sequential([Conv2D(4, 3, padding=1), ReLU(), pool, Flatten(), Dense(3)],
                       input_shape=(2, 7, 6), dtype="float64", seed=0)  # fmt: skip
    assert [len(step) for step in model.execution_plan()] == [1, 2, 1, 1]
    assert model.execution_plan()[1] == (model.layers[2], model.layers[1])
    rng = np.random.default_rng(0)
    if values == "ties":
        x = rng.integers(-1, 2, (3, 2, 7, 6)).astype(np.float64)  # many zeros and equal maxima
        for param in model.parameters():
            param.data = np.round(param.data * 2)  # integer weights: exact ties after ReLU
    else:
        x = rng.standard_normal((3, 2, 7, 6))
    out = model.forward(x, training=True)
    dout = rng.standard_normal(out.shape)
    dx = model.backward(dout)
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}

    expected_out, expected_dx, expected_grads = layer_by_layer(model, x, dout)
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(dx, expected_dx)
    for name in grads:
        np.testing.assert_array_equal(grads[name], expected_grads[name])


def test_only_relu_followed_by_max_pool_is_reordered():
    model = Sequential([Conv2D(2, 3), Tanh(), MaxPool2D(2), ReLU(), Flatten(), ReLU(), Dense(2)], input_shape=(1, 6, 6))
    assert all(len(step) == 1 for step in model.execution_plan())
    assert len(model.execution_plan(stop=2)) == 2
    relu_pool = Sequential([ReLU(), MaxPool2D(2)], input_shape=(1, 4, 4))
    assert [len(step) for step in relu_pool.execution_plan()] == [2]
    assert [len(step) for step in relu_pool.execution_plan(stop=1)] == [1]  # the pair is cut by stop
