"""conv2d, ReLU, then 2x2 average pooling in one pass: the three ops (the output bit for bit) and the naive
twin; test_conv_pool.py holds it to PyTorch and finite differences beside the max-pooling fusion."""

import numpy as np
import pytest

from convnp.functional import naive
from convnp.functional.activations import relu_backward, relu_forward
from convnp.functional.conv import conv2d_backward, conv2d_forward
from convnp.functional.conv_pool import conv2d_relu_avg_pool2d_backward, conv2d_relu_avg_pool2d_forward
from convnp.functional.pooling import avg_pool2d_backward, avg_pool2d_forward
from tests.functional.test_conv import conv_args, make_tensors
from tests.functional.test_conv_pool import CONFIGS, chunk_bytes  # noqa: F401  (a fixture)


def separate(x, weight, bias, config, dout):
    """The three ops one after the other: output and (dx, dweight, dbias)."""
    z, conv_cache = conv2d_forward(x, weight, bias, *conv_args(config))
    activated, relu_cache = relu_forward(z)
    pooled, pool_cache = avg_pool2d_forward(activated, 2)
    grads = conv2d_backward(relu_backward(avg_pool2d_backward(dout, pool_cache), relu_cache), conv_cache)
    return pooled, grads


def assert_same(actual, expected) -> None:
    if expected is None:
        assert actual is None
    else:
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("config", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
def test_fused_equals_the_three_ops(config, dtype, chunk_bytes):  # noqa: F811
    rng = np.random.default_rng(hash(str(config)) % 2**32)
    x, weight, bias = (None if a is None else a.astype(dtype) for a in make_tensors(config, rng))
    out, cache = conv2d_relu_avg_pool2d_forward(x, weight, bias, *conv_args(config))
    dout = rng.standard_normal(out.shape).astype(dtype)
    expected_out, expected_grads = separate(x, weight, bias, config, dout)
    assert_same(out, expected_out)
    assert 0 < cache.positive.mean() < 1  # the ReLU clipped some values and kept others
    dx, dweight, dbias = conv2d_relu_avg_pool2d_backward(dout, cache)
    assert_same(dx, expected_grads[0])  # image by image: the same sums
    # the weight and bias gradients sum over chunks of images, sized differently here: to rounding
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    for actual, expected in zip((dweight, dbias), expected_grads[1:]):
        if expected is None:
            assert actual is None
        else:
            assert actual.dtype == expected.dtype
            np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("config", CONFIGS[:12], ids=[f"cfg{i}" for i in range(12)])
def test_fused_equals_the_naive_twin(config):
    rng = np.random.default_rng(hash(str(config)) % 2**32 + 2)
    x, weight, bias = make_tensors(config, rng)
    out, cache = conv2d_relu_avg_pool2d_forward(x, weight, bias, *conv_args(config))
    naive_out, naive_cache = naive.fused.conv2d_relu_avg_pool2d_forward(x, weight, bias, *conv_args(config))
    np.testing.assert_allclose(out, naive_out, rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    grads = conv2d_relu_avg_pool2d_backward(dout, cache)
    for actual, expected in zip(grads, naive.fused.conv2d_relu_avg_pool2d_backward(dout, naive_cache), strict=True):
        if expected is None:
            assert actual is None
        else:
            np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


def test_odd_edges_get_no_gradient_and_no_input_gradient_on_request():
    rng = np.random.default_rng(1)
    x, weight, bias = rng.standard_normal((2, 3, 7, 9)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    out, cache = conv2d_relu_avg_pool2d_forward(x, weight, bias, padding=1)  # 7x9 -> 3x4 pooled
    assert out.shape == (2, 4, 3, 4)
    dout = rng.standard_normal(out.shape)
    expected_out, expected = separate(x, weight, bias, {"stride": 1, "padding": 1, "dilation": 1, "groups": 1}, dout)
    assert_same(out, expected_out)
    for actual, wanted in zip(conv2d_relu_avg_pool2d_backward(dout, cache), expected, strict=True):
        np.testing.assert_allclose(actual, wanted, rtol=1e-12, atol=1e-12)
    dx, dweight, dbias = conv2d_relu_avg_pool2d_backward(dout, cache, input_grad=False)
    assert dx is None
    np.testing.assert_allclose(dweight, expected[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dbias, expected[2], rtol=1e-12, atol=1e-12)


def test_errors_name_the_op():
    weight = np.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match="conv2d_relu_avg_pool2d: the convolution output"):
        conv2d_relu_avg_pool2d_forward(np.zeros((1, 1, 3, 3)), weight)  # a 1x1 convolution output
    out, cache = conv2d_relu_avg_pool2d_forward(np.zeros((1, 1, 5, 5)), weight, padding=1)
    with pytest.raises(ValueError, match="conv2d_relu_avg_pool2d_backward: expected dout of shape"):
        conv2d_relu_avg_pool2d_backward(np.zeros((1, 1, 3, 3)), cache)
