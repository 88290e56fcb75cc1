"""convnp.gradcheck on the convolution and pooling layers, on a model, and on a wrong backward pass."""

import numpy as np
import pytest

from convnp.gradcheck import gradcheck, numerical_gradient, relative_error
from convnp.nn import (
    AvgPool2D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    MaxPool2D,
    ReLU,
    Sequential,
)

LAYERS = {
    "conv": lambda: Conv2D(3, 3, padding=1),
    "conv_stride_dilation": lambda: Conv2D(4, (2, 3), stride=(2, 1), padding=(1, 2), dilation=(2, 1)),
    "conv_groups_no_bias": lambda: Conv2D(4, 3, groups=2, use_bias=False),
    "conv_same_even_kernel": lambda: Conv2D(2, 4, padding="same"),
    "conv_1x1_relu": lambda: Conv2D(3, 1, activation="tanh"),
    "maxpool_overlapping": lambda: MaxPool2D(3, stride=2, padding=1),
    "maxpool_halving": lambda: MaxPool2D(2),
    "avgpool": lambda: AvgPool2D((2, 3), stride=1, padding=(1, 1)),
    "global_avg": lambda: GlobalAvgPool2D(),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_gradients_match_finite_differences(name):
    rng = np.random.default_rng(0)
    # Distinct, well-separated values keep max pooling away from ties (its kinks).
    x = rng.permutation(2 * 4 * 7 * 6).reshape(2, 4, 7, 6) / 10.0
    errors = gradcheck(LAYERS[name](), x)
    assert set(errors) >= {"input"}
    for tensor, error in errors.items():
        assert error < 1e-7, (name, tensor, error)


def test_model_gradients_in_training_mode_with_batch_norm_and_dropout():
    model = Sequential(
        [Conv2D(3, 3, padding=1), BatchNorm2D(), ReLU(), MaxPool2D(2), Flatten(), Dropout(0.3), Dense(4)],
        input_shape=(2, 6, 6),
        seed=0,
    )
    x = np.random.default_rng(1).standard_normal((3, 2, 6, 6))
    errors = gradcheck(model, x, training=True)
    assert set(errors) == {"input", "0.weight", "0.bias", "1.weight", "1.bias", "6.weight", "6.bias"}
    assert max(errors.values()) < 1e-7
    assert model.dtype == np.float32  # the model itself was not changed


class WrongBackwardConv(Conv2D):
    """A convolution whose weight gradient is off by 1%: gradcheck must notice."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.weight.grad = self.weight.grad * 1.01
        return dx


def test_gradcheck_catches_a_wrong_gradient():
    errors = gradcheck(WrongBackwardConv(2, 3), np.random.default_rng(0).standard_normal((2, 1, 5, 5)))
    assert errors["input"] < 1e-7
    assert errors["weight"] > 1e-3


def test_numerical_gradient_of_a_known_function():
    x = np.array([1.0, -2.0, 0.5])
    grad = numerical_gradient(lambda: float(np.sum(x**3)), x)
    np.testing.assert_allclose(grad, 3 * x**2, rtol=1e-8)
    np.testing.assert_array_equal(x, [1.0, -2.0, 0.5])  # restored


def test_relative_error_is_scale_relative_with_a_floor():
    assert relative_error(np.array([100.0]), np.array([101.0])) == pytest.approx(1 / 101)
    assert relative_error(np.zeros(3), np.full(3, 1e-9)) < 1e-7  # noise around an exact zero
    assert relative_error(np.zeros(0), np.zeros(0)) == 0.0
