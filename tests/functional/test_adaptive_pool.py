"""adaptive_avg_pool2d: PyTorch, the naive loops, finite differences, its special cases, the bins and errors."""

import numpy as np
import pytest

from convnp.functional import naive
from convnp.functional.adaptive_pool import adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward
from convnp.functional.geometry import adaptive_bins, adaptive_output_hw
from convnp.functional.pooling import avg_pool2d_forward, global_avg_pool2d_forward
from tests.helpers import check_grad


def random_case(seed: int) -> tuple[tuple[int, ...], int | tuple]:
    """(x shape, output_size): outputs that divide the input, do not, exceed it, and pairs with None."""
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 4)), *(int(v) for v in rng.integers(1, 12, size=2)))
    sizes = [int(v) for v in rng.integers(1, 9, size=2)]
    kind = seed % 4
    if kind == 0:
        return shape, sizes[0]
    if kind == 1:
        return shape, (sizes[0], None)
    if kind == 2:
        return shape, (None, sizes[1])
    return shape, tuple(sizes)


CASES = [random_case(seed) for seed in range(80)]
IDS = [f"{shape[2]}x{shape[3]}-to-{size}" for shape, size in CASES]


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_matches_torch(index):
    torch = pytest.importorskip("torch")
    shape, output_size = CASES[index]
    rng = np.random.default_rng(index)
    x = rng.standard_normal(shape)
    out, cache = adaptive_avg_pool2d_forward(x, output_size)
    dout = rng.standard_normal(out.shape)
    dx = adaptive_avg_pool2d_backward(dout, cache)

    x_t = torch.tensor(x, requires_grad=True)
    out_t = torch.nn.functional.adaptive_avg_pool2d(x_t, output_size)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("index", range(24), ids=IDS[:24])
def test_matches_the_naive_loops(index):
    shape, output_size = CASES[index]
    rng = np.random.default_rng(100 + index)
    x = rng.standard_normal(shape)
    out, cache = adaptive_avg_pool2d_forward(x, output_size)
    naive_out, naive_cache = naive.adaptive_avg_pool2d_forward(x, output_size)
    np.testing.assert_allclose(out, naive_out, rtol=1e-10, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(
        adaptive_avg_pool2d_backward(dout, cache),
        naive.adaptive_avg_pool2d_backward(dout, naive_cache),
        rtol=1e-10,
        atol=1e-12,
    )


@pytest.mark.parametrize("output_size", [1, 3, (2, 5), (4, None), 7])
def test_finite_differences(output_size):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 5, 6))
    out, cache = adaptive_avg_pool2d_forward(x, output_size)
    dout = rng.standard_normal(out.shape)
    check_grad(
        lambda: adaptive_avg_pool2d_forward(x, output_size)[0], x, dout, adaptive_avg_pool2d_backward(dout, cache)
    )


def test_bins_of_pytorch():
    # start = floor(i*H/H_out), end = ceil((i+1)*H/H_out)
    assert adaptive_bins(5, 3) == [(0, 2), (1, 4), (3, 5)]  # overlapping by one row
    assert adaptive_bins(6, 3) == [(0, 2), (2, 4), (4, 6)]  # a plain 2-wide pool
    assert adaptive_bins(2, 3) == [(0, 1), (0, 2), (1, 2)]  # more outputs than inputs
    assert adaptive_bins(7, 1) == [(0, 7)]


def test_output_size_forms():
    assert adaptive_output_hw(3, (8, 9)) == (3, 3)
    assert adaptive_output_hw((None, 4), (8, 9)) == (8, 4)
    assert adaptive_output_hw([2, None]) == (2, None)


def test_overlapping_bins_share_the_gradient():
    x = np.arange(5.0).reshape(1, 1, 5, 1)
    out, cache = adaptive_avg_pool2d_forward(x, (3, 1))
    np.testing.assert_allclose(out[0, 0, :, 0], [0.5, 2.0, 3.5])  # means of rows 0-1, 1-3, 3-4
    dx = adaptive_avg_pool2d_backward(np.ones((1, 1, 3, 1)), cache)
    # rows 1 and 3 sit in two bins each: 1/2 + 1/3
    np.testing.assert_allclose(dx[0, 0, :, 0], [1 / 2, 1 / 2 + 1 / 3, 1 / 3, 1 / 3 + 1 / 2, 1 / 2])


def test_an_output_of_one_is_global_average_pooling():
    x = np.random.default_rng(4).standard_normal((2, 3, 5, 7))
    out, _ = adaptive_avg_pool2d_forward(x, 1)
    np.testing.assert_allclose(out[:, :, 0, 0], global_avg_pool2d_forward(x)[0], rtol=1e-12)


def test_a_dividing_output_is_plain_average_pooling():
    x = np.random.default_rng(5).standard_normal((2, 3, 6, 8))
    out, _ = adaptive_avg_pool2d_forward(x, (3, 2))
    np.testing.assert_allclose(out, avg_pool2d_forward(x, (2, 4))[0], rtol=1e-12)


def test_float32_stays_float32():
    x = np.random.default_rng(6).standard_normal((2, 3, 7, 5))
    out64, cache64 = adaptive_avg_pool2d_forward(x, (3, 4))
    out32, cache32 = adaptive_avg_pool2d_forward(x.astype(np.float32), (3, 4))
    dx32 = adaptive_avg_pool2d_backward(np.ones(out32.shape, np.float32), cache32)
    assert out32.dtype == dx32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx32, adaptive_avg_pool2d_backward(np.ones(out64.shape), cache64), rtol=1e-6)


@pytest.mark.parametrize(
    ("output_size", "error", "match"),
    [
        (0, ValueError, "output_size must be >= 1"),
        ((3, 0), ValueError, "output_size must be >= 1"),
        (2.5, TypeError, "output_size must be an int or a pair"),
        ((2, 2, 2), TypeError, "output_size must be an int or a pair"),
        (None, TypeError, "output_size must be an int or a pair"),
        ((True, 2), TypeError, "output_size"),
    ],
)
def test_bad_output_sizes(output_size, error, match):
    with pytest.raises(error, match=match) as info:
        adaptive_avg_pool2d_forward(np.zeros((1, 1, 4, 4)), output_size)
    assert "adaptive_avg_pool2d" in str(info.value)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: expected x of shape \(N, C, H, W\)"):
        adaptive_avg_pool2d_forward(np.zeros((4, 4)), 2)
    with pytest.raises(TypeError, match="adaptive_avg_pool2d: expected a floating-point x"):
        adaptive_avg_pool2d_forward(np.zeros((1, 1, 4, 4), dtype=np.int64), 2)
    _, cache = adaptive_avg_pool2d_forward(np.zeros((1, 1, 4, 4)), 2)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d_backward: expected dout of shape \(1, 1, 2, 2\)"):
        adaptive_avg_pool2d_backward(np.zeros((1, 1, 2, 3)), cache)
