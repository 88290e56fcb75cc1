"""conv2d followed by 2x2 max pooling in one pass: equal to the two ops, to PyTorch and to finite differences
(the last two also for conv2d + ReLU + 2x2 average pooling, whose own tests are test_conv_relu_avg_pool.py)."""

import numpy as np
import pytest

from convnp.functional import conv_pool
from convnp.functional.conv import conv2d_backward, conv2d_forward
from convnp.functional.conv_pool import (
    conv2d_max_pool2d_backward,
    conv2d_max_pool2d_forward,
    conv2d_relu_avg_pool2d_backward,
    conv2d_relu_avg_pool2d_forward,
)
from convnp.functional.pooling import max_pool2d_backward, max_pool2d_forward
from convnp.gradcheck import numerical_gradient, relative_error
from tests.functional.test_conv import conv_args, make_tensors, random_conv_config


def pool_config(seed: int) -> dict:
    """A random conv2d configuration whose output is at least 2x2 (so it can be pooled)."""
    rng = np.random.default_rng(seed)
    while True:
        config = random_conv_config(rng)
        height, width = config["hw"]
        out_hw = [
            (size + 2 * config["padding"][a] - config["dilation"][a] * (config["kernel"][a] - 1) - 1)
            // config["stride"][a]
            + 1
            for a, size in enumerate((height + 4, width + 4))  # four more rows and columns than drawn
        ]
        if min(out_hw) >= 2:
            config["hw"] = (height + 4, width + 4)
            return config


CONFIGS = [pool_config(seed) for seed in range(60)]


def separate(x, weight, bias, config, dout=None):
    out, conv_cache = conv2d_forward(x, weight, bias, *conv_args(config))
    pooled, pool_cache = max_pool2d_forward(out, 2)
    if dout is None:
        return pooled
    return pooled, conv2d_backward(max_pool2d_backward(dout, pool_cache), conv_cache)


@pytest.fixture(params=[1 << 21, 1 << 12], ids=["chunks of 2 MB", "one image per chunk"])
def chunk_bytes(request, monkeypatch):
    monkeypatch.setattr("convnp.backend.batched.CHUNK_BYTES", request.param)


@pytest.mark.parametrize("config", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
def test_fused_equals_conv_then_pool(config, chunk_bytes):
    rng = np.random.default_rng(hash(str(config)) % 2**32)
    x, weight, bias = make_tensors(config, rng)
    out, cache = conv2d_max_pool2d_forward(x, weight, bias, *conv_args(config))
    dout = rng.standard_normal(out.shape)
    expected_out, expected_grads = separate(x, weight, bias, config, dout)
    np.testing.assert_allclose(out, expected_out, rtol=1e-12, atol=1e-12)
    for actual, expected in zip(conv2d_max_pool2d_backward(dout, cache), expected_grads):
        if expected is None:
            assert actual is None
        else:
            np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


# Both fused ops of conv_pool: (forward, backward, the same with torch.nn.functional)
FUSED = {
    "conv-maxpool": (
        conv2d_max_pool2d_forward,
        conv2d_max_pool2d_backward,
        lambda torch, z: torch.nn.functional.max_pool2d(z, 2),
    ),
    "conv-relu-avgpool": (
        conv2d_relu_avg_pool2d_forward,
        conv2d_relu_avg_pool2d_backward,
        lambda torch, z: torch.nn.functional.avg_pool2d(torch.relu(z), 2),
    ),
}


@pytest.mark.parametrize("fused", list(FUSED))
@pytest.mark.parametrize("config", CONFIGS[:20], ids=[f"cfg{i}" for i in range(20)])
def test_fused_matches_torch(config, fused):
    torch = pytest.importorskip("torch")
    forward, backward, after_conv = FUSED[fused]
    rng = np.random.default_rng(hash(str(config)) % 2**32 + 1)
    x, weight, bias = make_tensors(config, rng)
    out, cache = forward(x, weight, bias, *conv_args(config))
    dout = rng.standard_normal(out.shape)
    dx, dweight, dbias = backward(dout, cache)

    x_t, w_t = torch.tensor(x, requires_grad=True), torch.tensor(weight, requires_grad=True)
    b_t = torch.tensor(bias, requires_grad=True) if bias is not None else None
    stride, padding, dilation, groups = conv_args(config)
    out_t = after_conv(torch, torch.nn.functional.conv2d(x_t, w_t, b_t, stride, padding, dilation, groups))
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dweight, w_t.grad.numpy(), rtol=1e-10, atol=1e-10)
    if bias is not None:
        np.testing.assert_allclose(dbias, b_t.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fused", list(FUSED))
@pytest.mark.parametrize("config", CONFIGS[:6], ids=[f"cfg{i}" for i in range(6)])
def test_fused_gradients_match_finite_differences(config, fused):
    forward, backward, _ = FUSED[fused]
    rng = np.random.default_rng(7)
    x, weight, bias = make_tensors(config, rng)
    out, cache = forward(x, weight, bias, *conv_args(config))
    probe = rng.standard_normal(out.shape)
    dx, dweight, dbias = backward(probe, cache)

    def loss():
        return float(np.sum(forward(x, weight, bias, *conv_args(config))[0] * probe))

    assert relative_error(dx, numerical_gradient(loss, x)) < 1e-6
    assert relative_error(dweight, numerical_gradient(loss, weight)) < 1e-6
    if bias is not None:
        assert relative_error(dbias, numerical_gradient(loss, bias)) < 1e-6


def test_ties_go_to_the_first_maximum_as_in_the_separate_ops():
    rng = np.random.default_rng(0)
    x = rng.integers(-1, 2, (3, 2, 9, 8)).astype(np.float64)
    weight = rng.integers(-1, 2, (4, 2, 3, 3)).astype(np.float64)  # integer values: exact ties
    out, cache = conv2d_max_pool2d_forward(x, weight, None, 1, 1)
    dout = rng.standard_normal(out.shape)
    config = {"stride": 1, "padding": 1, "dilation": 1, "groups": 1}
    expected_out, expected_grads = separate(x, weight, None, config, dout)
    np.testing.assert_array_equal(out, expected_out)
    for actual, expected in zip(conv2d_max_pool2d_backward(dout, cache), expected_grads):
        if expected is not None:
            np.testing.assert_array_equal(actual, expected)


def test_float32_stays_float32_and_agrees_with_float64():
    config = CONFIGS[0]
    x, weight, bias = make_tensors(config, np.random.default_rng(3))
    out64, cache64 = conv2d_max_pool2d_forward(x, weight, bias, *conv_args(config))
    args32 = [a.astype(np.float32) if a is not None else None for a in (x, weight, bias)]
    out32, cache32 = conv2d_max_pool2d_forward(*args32, *conv_args(config))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-4)
    dout = np.ones(out64.shape)
    for g32, g64 in zip(conv2d_max_pool2d_backward(dout.astype(np.float32), cache32),
                        conv2d_max_pool2d_backward(dout, cache64)):  # fmt: skip
        if g64 is not None:
            assert g32.dtype == np.float32
            np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-3)


def test_nan_falls_back_to_max_pool_nan_rule():
    rng = np.random.default_rng(0)
    x, weight = rng.standard_normal((2, 1, 6, 6)), rng.standard_normal((2, 1, 3, 3))
    x[1, 0, 3, 3] = np.nan
    out, cache = conv2d_max_pool2d_forward(x, weight, None, 1, 1)
    assert cache.pool is not None  # ran as two ops
    config = {"stride": 1, "padding": 1, "dilation": 1, "groups": 1}
    dout = np.ones(out.shape)
    expected_out, expected_grads = separate(x, weight, None, config, dout)
    np.testing.assert_array_equal(out, expected_out)  # NaNs in the same places
    dx, _, _ = conv2d_max_pool2d_backward(dout, cache)
    np.testing.assert_array_equal(dx, expected_grads[0])


def test_batch_of_one_and_no_input_gradient():
    rng = np.random.default_rng(1)
    x, weight, bias = rng.standard_normal((1, 3, 5, 5)), rng.standard_normal((2, 3, 1, 1)), np.zeros(2)
    out, cache = conv2d_max_pool2d_forward(x, weight, bias)
    assert out.shape == (1, 2, 2, 2)
    dx, dweight, dbias = conv2d_max_pool2d_backward(np.ones(out.shape), cache, input_grad=False)
    assert dx is None and dweight.shape == weight.shape and dbias.shape == (2,)


def test_errors_name_the_op():
    x, weight = np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match="smaller than the 2x2 pool"):
        conv2d_max_pool2d_forward(x, weight)  # a 1x1 convolution output
    out, cache = conv2d_max_pool2d_forward(np.zeros((1, 1, 5, 5)), weight, padding=1)
    with pytest.raises(ValueError, match="conv2d_max_pool2d_backward: expected dout of shape"):
        conv2d_max_pool2d_backward(np.zeros((1, 1, 3, 3)), cache)
    assert conv_pool.__all__
