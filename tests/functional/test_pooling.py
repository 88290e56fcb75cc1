"""Max, average and global-average pooling: PyTorch, finite differences, ties, edge cases."""

import numpy as np
import pytest

from convnp.functional import naive
from convnp.functional.pooling import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from convnp.gradcheck import numerical_gradient, relative_error

POOLS = {
    "max": (max_pool2d_forward, max_pool2d_backward),
    "avg": (avg_pool2d_forward, avg_pool2d_backward),
}


def random_pool_config(rng: np.random.Generator) -> dict:
    kernel = tuple(int(k) for k in rng.integers(1, 5, size=2))
    stride = tuple(int(s) for s in rng.integers(1, 4, size=2))  # often < kernel: overlapping windows
    padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    height = int(rng.integers(kernel[0], kernel[0] + 7))
    width = int(rng.integers(kernel[1], kernel[1] + 7))
    return {
        "shape": (int(rng.integers(1, 4)), int(rng.integers(1, 4)), height, width),
        "kernel": kernel,
        "stride": stride,
        "padding": padding,
    }


CONFIGS = [random_pool_config(np.random.default_rng(seed)) for seed in range(40)]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("config", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_pooling_matches_torch(kind, config, ties):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(abs(hash((kind, str(config), ties))) % 2**32)
    # Small integers make many windows hold several equal maxima.
    x = rng.integers(0, 3, config["shape"]).astype(np.float64) if ties else rng.standard_normal(config["shape"])
    forward, backward = POOLS[kind]
    args = (config["kernel"], config["stride"], config["padding"])
    out, cache = forward(x, *args)
    dout = rng.standard_normal(out.shape)
    dx = backward(dout, cache)

    x_t = torch.tensor(x, requires_grad=True)
    torch_op = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
    out_t = torch_op(x_t, *args)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("seed", range(6))
def test_pooling_finite_differences(kind, seed):
    config = CONFIGS[seed]
    rng = np.random.default_rng(seed)
    # Distinct values far apart keep max-pool away from its kinks (ties).
    x = rng.permutation(np.prod(config["shape"])).reshape(config["shape"]).astype(np.float64) * 0.1
    forward, backward = POOLS[kind]
    args = (config["kernel"], config["stride"], config["padding"])
    out, cache = forward(x, *args)
    r = rng.standard_normal(out.shape)
    dx = backward(r, cache)
    numeric = numerical_gradient(lambda: float(np.sum(forward(x, *args)[0] * r)), x)
    assert relative_error(dx, numeric) < 1e-7


def test_max_pool_tie_sends_the_whole_gradient_to_the_first_maximum():
    x = np.array([[[[1.0, 3.0], [3.0, 3.0]]]])
    out, cache = max_pool2d_forward(x, 2)
    dx = max_pool2d_backward(np.array([[[[5.0]]]]), cache)
    assert out[0, 0, 0, 0] == 3.0
    np.testing.assert_array_equal(dx[0, 0], [[0.0, 5.0], [0.0, 0.0]])


def test_overlapping_windows_accumulate_on_a_shared_maximum():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 9.0  # the maximum of all four 2x2 windows at stride 1
    out, cache = max_pool2d_forward(x, 2, stride=1)
    dx = max_pool2d_backward(np.ones_like(out), cache)
    assert dx[0, 0, 1, 1] == 4.0 and dx.sum() == 4.0


def test_max_pool_padding_is_never_the_maximum():
    x = -np.ones((1, 1, 2, 2))
    out, _ = max_pool2d_forward(x, 2, stride=2, padding=1)
    np.testing.assert_array_equal(out, -np.ones((1, 1, 2, 2)))


def test_avg_pool_counts_zero_padding():
    x = np.ones((1, 1, 2, 2))
    out, _ = avg_pool2d_forward(x, 2, stride=2, padding=1)
    np.testing.assert_allclose(out, np.full((1, 1, 2, 2), 0.25))


def test_global_avg_pool_forward_backward():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 4))
    out, cache = global_avg_pool2d_forward(x)
    np.testing.assert_allclose(out, x.mean(axis=(2, 3)))
    r = rng.standard_normal(out.shape)
    dx = global_avg_pool2d_backward(r, cache)
    numeric = numerical_gradient(lambda: float(np.sum(global_avg_pool2d_forward(x)[0] * r)), x)
    assert relative_error(dx, numeric) < 1e-7


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_float32_path(kind):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 7))
    forward, backward = POOLS[kind]
    out64, cache64 = forward(x, 3, 2, 1)
    out32, cache32 = forward(x.astype(np.float32), 3, 2, 1)
    dout = rng.standard_normal(out64.shape)
    dx32 = backward(dout.astype(np.float32), cache32)
    assert out32.dtype == np.float32 and dx32.dtype == np.float32
    assert relative_error(out32, out64) < 1e-4
    assert relative_error(dx32, backward(dout, cache64)) < 1e-4
    assert global_avg_pool2d_forward(x.astype(np.float32))[0].dtype == np.float32


def test_pool_errors_name_the_op():
    with pytest.raises(ValueError, match="max_pool2d.*at most half"):
        max_pool2d_forward(np.zeros((1, 1, 4, 4)), 2, padding=2)
    with pytest.raises(ValueError, match="avg_pool2d.*too small"):
        avg_pool2d_forward(np.zeros((1, 1, 2, 2)), 3)
    with pytest.raises(ValueError, match="N, C, H, W"):
        max_pool2d_forward(np.zeros((4, 4)), 2)
    with pytest.raises(TypeError, match="max_pool2d"):
        max_pool2d_forward(np.zeros((1, 1, 4, 4), dtype=np.int64), 2)


def test_max_pool_nan_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.array([[[[np.nan, 4.0], [np.nan, 0.0]], [[1.0, np.nan], [3.0, 2.0]], [[1.0, 2.0], [3.0, 0.0]]]])
    out, cache = max_pool2d_forward(x, 2)
    dout = np.array([[[[2.0]], [[5.0]], [[7.0]]]])
    x_t = torch.tensor(x, requires_grad=True)
    out_t = torch.nn.functional.max_pool2d(x_t, 2)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    np.testing.assert_array_equal(max_pool2d_backward(dout, cache), x_t.grad.numpy())


@pytest.mark.parametrize("shape", [(1, 1, 4, 4), (2, 3, 7, 9), (3, 2, 6, 5), (1, 4, 2, 3)])
@pytest.mark.parametrize("values", ["distinct", "ties", "zeros"])
def test_halving_fast_path_matches_torch_with_odd_sizes_and_ties(shape, values):
    """2x2 / stride 2 takes a separate fast path: check it like the general one."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(len(values) * 100 + shape[-1])
    x = {
        "distinct": rng.standard_normal(shape),
        "ties": rng.integers(0, 2, shape).astype(np.float64),
        "zeros": np.zeros(shape),
    }[values]
    out, cache = max_pool2d_forward(x, 2)
    assert cache.argmax is None  # the fast path was taken
    dout = rng.standard_normal(out.shape)
    x_t = torch.tensor(x, requires_grad=True)
    out_t = torch.nn.functional.max_pool2d(x_t, 2)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_array_equal(out, out_t.detach().numpy())
    np.testing.assert_allclose(max_pool2d_backward(dout, cache), x_t.grad.numpy(), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 4), (3, 8, 7, 7), (1, 2, 1, 9)])
def test_global_avg_pool_matches_torch(shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape)
    out, cache = global_avg_pool2d_forward(x)
    dout = rng.standard_normal(out.shape)
    x_t = torch.tensor(x, requires_grad=True)
    out_t = torch.nn.functional.adaptive_avg_pool2d(x_t, 1).flatten(1)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(global_avg_pool2d_backward(dout, cache), x_t.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (2, 3, 7, 9), (3, 2, 6, 5), (1, 4, 2, 3), (2, 5, 8, 8)])
def test_avg_pool_halving_path_matches_naive_and_torch(shape):
    """2x2 / stride 2 average pooling: the broadcast backward, odd edges included."""
    rng = np.random.default_rng(shape[-1] * 10 + shape[-2])
    x = rng.standard_normal(shape)
    out, cache = avg_pool2d_forward(x, 2)
    dout = rng.standard_normal(out.shape)
    dx = avg_pool2d_backward(dout, cache)
    out_ref, cache_ref = naive.avg_pool2d_forward(x, 2)
    np.testing.assert_allclose(out, out_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, naive.avg_pool2d_backward(dout, cache_ref), rtol=1e-12, atol=1e-14)
    if shape[2] % 2:
        assert not dx[:, :, -1, :].any()  # the odd last row is in no window
    numeric = numerical_gradient(lambda: float(np.sum(avg_pool2d_forward(x, 2)[0] * dout)), x)
    assert relative_error(dx, numeric) < 1e-7
    torch = pytest.importorskip("torch")
    x_t = torch.tensor(x, requires_grad=True)
    out_t = torch.nn.functional.avg_pool2d(x_t, 2)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_avg_pool_halving_backward_keeps_float32_and_fills_every_element():
    x = np.ones((2, 3, 6, 4), dtype=np.float32)
    out, cache = avg_pool2d_forward(x, 2)
    dx = avg_pool2d_backward(np.full(out.shape, 8.0, dtype=np.float32), cache)
    assert dx.dtype == np.float32 and dx.shape == x.shape
    np.testing.assert_array_equal(dx, np.full(x.shape, 2.0, dtype=np.float32))
