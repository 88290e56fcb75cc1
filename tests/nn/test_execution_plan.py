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
    # A fused activation keeps the convolution out of the conv + pool fusion (tested below).
    model = Sequential([Conv2D(4, 3, padding=1, activation="tanh"), ReLU(), pool, Flatten(), Dense(3)],
                       input_shape=(2, 7, 6), dtype="float64", seed=0)  # fmt: skip
    assert [len(step.layers) for step in model.execution_plan()] == [1, 2, 1, 1]
    assert model.execution_plan()[1].layers == (model.layers[2], model.layers[1])
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
    assert all(len(step.layers) == 1 for step in model.execution_plan())
    assert len(model.execution_plan(stop=2)) == 2
    relu_pool = Sequential([ReLU(), MaxPool2D(2)], input_shape=(1, 4, 4))
    assert [len(step.layers) for step in relu_pool.execution_plan()] == [2]
    assert [len(step.layers) for step in relu_pool.execution_plan(stop=1)] == [1]  # the pair is cut by stop


@pytest.mark.parametrize("relu", ["before_pool", "after_pool", "none"])
@pytest.mark.parametrize("values", ["random", "ties"])
@pytest.mark.parametrize("size, conv", [((2, 7, 6), Conv2D(4, 3, padding=1)),       # odd height: an edge row dropped
                                        ((3, 12, 11), Conv2D(6, 3, stride=2, padding=1, groups=3)),
                                        ((1, 9, 9), Conv2D(5, 1, dilation=2))])  # fmt: skip
def test_conv_then_2x2_max_pool_runs_fused_with_identical_results(relu, values, size, conv):
    middle = {"before_pool": [ReLU(), MaxPool2D(2)], "after_pool": [MaxPool2D(2), ReLU()], "none": [MaxPool2D(2)]}
    model = Sequential([conv, *middle[relu], Flatten(), Dense(3)], input_shape=size, dtype="float64", seed=0)
    plan = model.execution_plan()
    assert plan[0].layers[:2] == (model.layers[0], model.layers[2 if relu == "before_pool" else 1])
    assert len(plan[0].layers) == (2 if relu == "none" else 3) - (relu == "after_pool")
    rng = np.random.default_rng(1)
    if values == "ties":
        x = rng.integers(-1, 2, (5, *size)).astype(np.float64)
        for param in model.parameters():
            param.data = np.round(param.data * 2)
    else:
        x = rng.standard_normal((5, *size))
    out = model.forward(x, training=True)
    dout = rng.standard_normal(out.shape)
    dx = model.backward(dout)
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}

    expected_out, expected_dx, expected_grads = layer_by_layer(model, x, dout)
    np.testing.assert_allclose(out, expected_out, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], expected_grads[name], rtol=1e-12, atol=1e-12, err_msg=name)


def test_fused_conv_pool_falls_back_to_the_nan_rule_of_max_pool():
    model = Sequential([Conv2D(2, 3, padding=1), MaxPool2D(2), Flatten(), Dense(2)],
                       input_shape=(1, 6, 6), dtype="float64", seed=0)  # fmt: skip
    assert len(model.execution_plan()[0].layers) == 2
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6))
    x[0, 0, 2, 3] = np.nan
    out = model.forward(x, training=True)
    expected_out, _, _ = layer_by_layer(model, x, np.ones_like(out))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected_out))
    np.testing.assert_array_equal(out[1], expected_out[1])
    model.forward(x, training=True)
    dx = model.backward(np.ones_like(out))  # runs the unfused backward it fell back to
    assert dx.shape == x.shape


def test_only_conv_without_activation_and_2x2_stride_2_pools_are_fused():
    def plan(*layers, shape=(1, 8, 8)):
        return [len(step.layers) for step in Sequential(list(layers), input_shape=shape).execution_plan()]

    assert plan(Conv2D(2, 3, activation="relu"), MaxPool2D(2)) == [1, 1]
    assert plan(Conv2D(2, 3), MaxPool2D(2, stride=1)) == [1, 1]
    assert plan(Conv2D(2, 3), MaxPool2D(2, padding=1)) == [1, 1]
    assert plan(Conv2D(2, 3), MaxPool2D(3)) == [1, 1]
    assert plan(Conv2D(2, 3), MaxPool2D(2)) == [2]
    assert plan(Conv2D(2, 3), ReLU(), MaxPool2D(2), ReLU()) == [3, 1]
