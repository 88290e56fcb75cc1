"""Winograd F(2x2, 3x3): against im2col, PyTorch, finite differences, the tile loops, and in float32."""

from __future__ import annotations

import numpy as np
import pytest

from convnp.backend import threads
from convnp.functional import naive
from convnp.functional.conv import conv2d_backward, conv2d_forward
from convnp.functional.winograd import (
    A_T,
    B_T,
    G,
    transform_filters,
    winograd_conv2d_backward,
    winograd_conv2d_forward,
)
from convnp.gradcheck import numerical_gradient, relative_error

PADDINGS = [0, 1, 2, (1, 0), ((0, 1), (2, 0)), "same", "valid", ((3, 0), (1, 4))]


def random_case(seed: int, max_channels: int = 17, max_size: int = 13, max_batch: int = 5) -> dict:
    """A valid 3x3 stride-1 configuration: batch 1..5, channels and filters 1..17, sizes 1..13, odd and even."""
    rng = np.random.default_rng(seed)
    padding = PADDINGS[seed % len(PADDINGS)]
    if isinstance(padding, str):
        totals = (2, 2) if padding == "same" else (0, 0)
    elif isinstance(padding, int):
        totals = (2 * padding, 2 * padding)
    elif isinstance(padding[0], int):
        totals = (2 * padding[0], 2 * padding[1])
    else:
        totals = (sum(padding[0]), sum(padding[1]))
    # Smallest size that still gives one output row (3 - padding), up to max_size.
    height, width = (int(rng.integers(max(3 - total, 1), max_size + 1)) for total in totals)
    return {
        "batch": int(rng.integers(1, max_batch + 1)),
        "channels": int(rng.integers(1, max_channels + 1)),
        "filters": int(rng.integers(1, max_channels + 1)),
        "hw": (height, width),
        "padding": padding,
        "bias": bool(seed % 3),
    }


def tensors(case: dict, rng: np.random.Generator, dtype=np.float64):
    x = rng.standard_normal((case["batch"], case["channels"], *case["hw"])).astype(dtype)
    weight = rng.standard_normal((case["filters"], case["channels"], 3, 3)).astype(dtype)
    bias = rng.standard_normal(case["filters"]).astype(dtype) if case["bias"] else None
    return x, weight, bias


def assert_relative(actual, expected, tolerance=1e-12):
    """Max |actual - expected| relative to max |expected| (the scale of the result)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = max(float(np.abs(expected).max()), np.finfo(expected.dtype).tiny)
    assert float(np.abs(actual - expected).max()) <= tolerance * scale


CASES = [random_case(seed) for seed in range(160)]


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_winograd_equals_im2col_in_float64(case):
    rng = np.random.default_rng(hash(str(case)) % 2**32)
    x, weight, bias = tensors(case, rng)
    expected, im2col_cache = conv2d_forward(x, weight, bias, padding=case["padding"])
    out, cache = winograd_conv2d_forward(x, weight, bias, padding=case["padding"])
    assert_relative(out, expected)
    dout = rng.standard_normal(out.shape)
    for actual, wanted in zip(winograd_conv2d_backward(dout, cache), conv2d_backward(dout, im2col_cache)):
        if wanted is None:
            assert actual is None
        else:
            assert_relative(actual, wanted)
    dx, dweight, dbias = winograd_conv2d_backward(dout, cache, input_grad=False)
    assert dx is None
    assert_relative(dweight, conv2d_backward(dout, im2col_cache)[1])


@pytest.mark.parametrize("seed", range(30))
def test_winograd_matches_torch_forward_and_autograd(seed):
    torch = pytest.importorskip("torch")
    case = CASES[seed]
    rng = np.random.default_rng(500 + seed)
    x, weight, bias = tensors(case, rng)
    out, cache = winograd_conv2d_forward(x, weight, bias, padding=case["padding"])
    dout = rng.standard_normal(out.shape)
    dx, dweight, dbias = winograd_conv2d_backward(dout, cache)

    x_t, w_t = torch.tensor(x, requires_grad=True), torch.tensor(weight, requires_grad=True)
    b_t = None if bias is None else torch.tensor(bias, requires_grad=True)
    padding = case["padding"]
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):  # per side: PyTorch pads explicitly
        (top, bottom), (left, right) = padding
        out_t = torch.nn.functional.conv2d(torch.nn.functional.pad(x_t, (left, right, top, bottom)), w_t, b_t)
    else:
        out_t = torch.nn.functional.conv2d(x_t, w_t, b_t, padding=padding)
    out_t.backward(torch.tensor(dout))
    assert_relative(out, out_t.detach().numpy())
    assert_relative(dx, x_t.grad.numpy())
    assert_relative(dweight, w_t.grad.numpy())
    if bias is None:
        assert dbias is None
    else:
        assert_relative(dbias, b_t.grad.numpy())


@pytest.mark.parametrize("padding", [0, 1, ((2, 0), (1, 2))])
def test_winograd_finite_differences(padding):
    rng = np.random.default_rng(11)
    x, weight, bias = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 3, 3)), rng.standard_normal(2)
    out, cache = winograd_conv2d_forward(x, weight, bias, padding=padding)
    projection = rng.standard_normal(out.shape)
    dx, dweight, dbias = winograd_conv2d_backward(projection, cache)

    def loss():
        return float(np.sum(winograd_conv2d_forward(x, weight, bias, padding=padding)[0] * projection))

    assert relative_error(dx, numerical_gradient(loss, x)) < 1e-8
    assert relative_error(dweight, numerical_gradient(loss, weight)) < 1e-8
    assert relative_error(dbias, numerical_gradient(loss, bias)) < 1e-8


@pytest.mark.parametrize("seed", range(12))
def test_tile_loops_equal_the_fast_path(seed):
    case = random_case(1000 + seed, max_channels=3, max_size=7, max_batch=2)
    rng = np.random.default_rng(seed)
    x, weight, bias = tensors(case, rng)
    out, cache = winograd_conv2d_forward(x, weight, bias, padding=case["padding"])
    loop_out, loop_cache = naive.winograd_conv2d_forward(x, weight, bias, padding=case["padding"])
    assert_relative(loop_out, out)
    dout = rng.standard_normal(out.shape)
    for loop_grad, grad in zip(naive.winograd_conv2d_backward(dout, loop_cache), winograd_conv2d_backward(dout, cache)):
        if grad is None:
            assert loop_grad is None
        else:
            assert_relative(loop_grad, grad)


@pytest.mark.parametrize("padding", [0, 1, 2, 3, ((0, 2), (1, 0)), ((4, 0), (0, 3))])
def test_input_gradient_is_the_adjoint_of_the_forward_pass(padding):
    """<conv(x), dout> = <x, dx> for every x: dx (computed as a convolution of dout) is the forward's transpose.

    Paddings above 2 make dx's own padding 2 - p negative: dout is cropped there.
    """
    rng = np.random.default_rng(5)
    x, weight = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((3, 4, 3, 3))
    out, cache = winograd_conv2d_forward(x, weight, padding=padding)
    dout = rng.standard_normal(out.shape)
    dx, _, _ = winograd_conv2d_backward(dout, cache)
    for _ in range(3):
        probe = rng.standard_normal(x.shape)
        forward_side = float(np.sum(winograd_conv2d_forward(probe, weight, padding=padding)[0] * dout))
        assert float(np.sum(probe * dx)) == pytest.approx(forward_side, rel=1e-12)


def test_transforms_compute_f23_on_one_tile():
    """F(2, 3) in 1-D: A^T [(G g) * (B^T d)] is the correlation of d (4 values) with g (3 values)."""
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal(4), rng.standard_normal(3)
    np.testing.assert_allclose(A_T @ ((G @ g) * (B_T @ d)), [d[0:3] @ g, d[1:4] @ g], rtol=1e-14)
    assert np.count_nonzero(G @ g) == 4  # four multiplications for two outputs, not six


def test_transformed_filters_are_g_g_gt_per_position():
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((3, 2, 3, 3))
    transformed = transform_filters(weight)  # (16, F, C)
    for f in range(3):
        for c in range(2):
            np.testing.assert_allclose(transformed[:, f, c].reshape(4, 4), G @ weight[f, c] @ G.T, rtol=1e-14)


def test_many_chunks_and_two_slices_sum_the_weight_gradient_in_order(monkeypatch):
    """A batch cut into several chunks and two slices gives the one-piece results (fixed-order sums)."""
    monkeypatch.setattr(threads, "MIN_ELEMENTS", 0)
    saved = threads.get_num_threads()
    rng = np.random.default_rng(2)
    x, weight, bias = (
        rng.standard_normal((21, 16, 16, 15)),
        rng.standard_normal((24, 16, 3, 3)),
        rng.standard_normal(24),
    )
    expected, im2col_cache = conv2d_forward(x, weight, bias, padding=1)
    dout = rng.standard_normal(expected.shape)
    wanted = conv2d_backward(dout, im2col_cache)
    try:
        for count in (1, 2):
            threads.set_num_threads(count)
            out, cache = winograd_conv2d_forward(x, weight, bias, padding=1)
            assert_relative(out, expected)
            first = winograd_conv2d_backward(dout, cache)
            again = winograd_conv2d_backward(dout, cache)
            for grad, repeat, reference in zip(first, again, wanted):
                assert_relative(grad, reference)
                np.testing.assert_array_equal(grad, repeat)  # the same bits on every run
    finally:
        threads.set_num_threads(saved)


# Rounding: the transforms' additions (B^T: two terms per value, twice; A^T: three terms, twice) and the
# halves in G add a few roundings per tile on top of the C-term dot product. Measured over the inputs of
# the test below (channels 1..256, He-scaled weights, padding 1, 3 draws each): the largest error,
# relative to the largest |value| of the float64 result, is 2.1 eps for the output, 2.3 eps for dx and
# 5.3 eps for dweight (eps = 2^-23 = 1.19e-7); im2col's own float32 errors on the same inputs are 5.0,
# 3.1 and 4.9 eps.
FLOAT32_BOUND = 32 * float(np.finfo(np.float32).eps)  # 3.8e-6, with a margin of 6x for other BLAS libraries


@pytest.mark.parametrize("channels", [1, 3, 16, 64, 256])
def test_float32_error_stays_within_the_documented_bound(channels):
    """float32 results within FLOAT32_BOUND (32 eps, relative to the largest |value|) of float64 im2col.

    The bound holds for the output, dx and dweight; the test fails if the
    transforms lose more than a few bits (a larger tile, F(4x4, 3x3), would).
    """
    rng = np.random.default_rng(channels)
    for _ in range(3):
        x = rng.standard_normal((2, channels, 12, 11))
        weight = rng.standard_normal((8, channels, 3, 3)) * np.sqrt(2 / (9 * channels))
        expected, im2col_cache = conv2d_forward(x, weight, None, padding=1)
        dout = rng.standard_normal(expected.shape)
        references = (expected, *conv2d_backward(dout, im2col_cache)[:2])
        out, cache = winograd_conv2d_forward(x.astype(np.float32), weight.astype(np.float32), padding=1)
        dx, dweight, _ = winograd_conv2d_backward(dout.astype(np.float32), cache)
        for actual, reference in zip((out, dx, dweight), references):
            assert actual.dtype == np.float32
            assert_relative(actual.astype(np.float64), reference, FLOAT32_BOUND)


@pytest.mark.parametrize(
    ("weight_shape", "options", "match"),
    [
        ((2, 3, 5, 5), {}, r"kernel_size=\(5, 5\)"),
        ((2, 3, 3, 3), {"stride": 2}, r"stride=\(2, 2\)"),
        ((2, 3, 3, 3), {"dilation": (1, 2)}, r"dilation=\(1, 2\)"),
        ((2, 1, 3, 3), {"groups": 3}, "groups=3"),
        ((2, 4, 3, 3), {}, "input channels"),
    ],
)
def test_unsupported_settings_raise_value_errors(weight_shape, options, match):
    x = np.zeros((1, 3, 6, 6))
    with pytest.raises(ValueError, match=match):
        winograd_conv2d_forward(x, np.zeros(weight_shape), **options)
    if match != "input channels":
        with pytest.raises(ValueError, match=match):
            naive.winograd_conv2d_forward(x, np.zeros(weight_shape), **options)


def test_bad_dout_and_dtypes_raise():
    x, weight = np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3))
    _, cache = winograd_conv2d_forward(x, weight)
    with pytest.raises(ValueError, match=r"expected dout of shape \(2, 4, 3, 3\)"):
        winograd_conv2d_backward(np.zeros((2, 4, 5, 5)), cache)
    with pytest.raises(TypeError, match="one float dtype"):
        winograd_conv2d_forward(x.astype(np.float32), weight)
    with pytest.raises(ValueError, match="too small"):
        winograd_conv2d_forward(np.zeros((1, 3, 2, 5)), weight)
