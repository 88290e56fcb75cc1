"""Pooling options at PyTorch parity: ceil_mode, max-pool dilation, count_include_pad=False, asymmetric padding.

Three oracles: PyTorch (symmetric padding directly; asymmetric padding as an
explicit ``F.pad`` followed by the pool, which PyTorch has no option for), the
naive loops, and finite differences.
"""

import numpy as np
import pytest

from convnp.functional import naive
from convnp.functional.geometry import pooled_output_size, window_counts
from convnp.functional.pooling import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from convnp.gradcheck import numerical_gradient, relative_error


def random_options(rng: np.random.Generator, kind: str, asymmetric: bool) -> dict:
    """A random pooling configuration: overlapping windows, padding up to half the kernel, every option."""
    kernel = tuple(int(k) for k in rng.integers(1, 5, size=2))
    stride = tuple(int(s) for s in rng.integers(1, 4, size=2))
    dilation = tuple(int(d) for d in rng.integers(1, 4, size=2)) if kind == "max" else (1, 1)
    if asymmetric:
        padding = tuple(tuple(int(p) for p in rng.integers(0, k // 2 + 1, size=2)) for k in kernel)
    else:
        padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    span = [dilation[a] * (kernel[a] - 1) + 1 for a in range(2)]
    options = {"kernel_size": kernel, "stride": stride, "padding": padding, "ceil_mode": bool(rng.integers(0, 2))}
    if kind == "max":
        options["dilation"] = dilation
    else:
        options["count_include_pad"] = bool(rng.integers(0, 2))
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), *(int(rng.integers(s, s + 6)) for s in span))
    return {"shape": shape, "options": options}


POOLS = {
    "max": (max_pool2d_forward, max_pool2d_backward, naive.max_pool2d_forward, naive.max_pool2d_backward),
    "avg": (avg_pool2d_forward, avg_pool2d_backward, naive.avg_pool2d_forward, naive.avg_pool2d_backward),
}
SYMMETRIC = {kind: [random_options(np.random.default_rng(seed), kind, False) for seed in range(50)] for kind in POOLS}
ASYMMETRIC = {kind: [random_options(np.random.default_rng(100 + s), kind, True) for s in range(40)] for kind in POOLS}


def torch_pool(torch, kind: str, x_t, options: dict):
    """PyTorch's pool with convnp's options (padding a pair of per-axis ints)."""
    function = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
    return function(x_t, **options)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("index", range(50))
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_options_match_torch(kind, index, ties):
    torch = pytest.importorskip("torch")
    config = SYMMETRIC[kind][index]
    rng = np.random.default_rng(index + (1000 if ties else 0))
    x = rng.integers(0, 3, config["shape"]).astype(np.float64) if ties else rng.standard_normal(config["shape"])
    forward, backward = POOLS[kind][:2]
    out, cache = forward(x, **config["options"])
    dout = rng.standard_normal(out.shape)
    dx = backward(dout, cache)
    x_t = torch.tensor(x, requires_grad=True)
    out_t = torch_pool(torch, kind, x_t, config["options"])
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("index", range(40))
def test_asymmetric_padding_matches_torch_on_an_explicitly_padded_input(kind, index):
    """((top, bottom), (left, right)) equals F.pad by those amounts, then the pool without padding.

    Padding with -inf (max) or zeros (avg, zero padding counted) makes the two
    the same op; ceil mode and count_include_pad=False treat padding apart from
    the input, so they are checked against the naive loops instead.
    """
    torch = pytest.importorskip("torch")
    config = ASYMMETRIC[kind][index]
    options = {**config["options"], "ceil_mode": False}
    options.pop("count_include_pad", None)
    (top, bottom), (left, right) = options.pop("padding")
    rng = np.random.default_rng(index)
    x = rng.standard_normal(config["shape"])
    forward, backward = POOLS[kind][:2]
    out, cache = forward(x, padding=((top, bottom), (left, right)), **options)
    dout = rng.standard_normal(out.shape)
    dx = backward(dout, cache)
    x_t = torch.tensor(x, requires_grad=True)
    fill = -np.inf if kind == "max" else 0.0
    x_padded = torch.nn.functional.pad(x_t, (left, right, top, bottom), value=fill)
    out_t = torch_pool(torch, kind, x_padded, options)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("index", range(40))
def test_options_match_the_naive_loops(kind, index):
    config = ASYMMETRIC[kind][index]
    rng = np.random.default_rng(index)
    x = rng.standard_normal(config["shape"])
    forward, backward, naive_forward, naive_backward = POOLS[kind]
    out, cache = forward(x, **config["options"])
    out_ref, cache_ref = naive_forward(x, **config["options"])
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(out, out_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(backward(dout, cache), naive_backward(dout, cache_ref), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("index", range(8))
def test_options_finite_differences(kind, index):
    config = ASYMMETRIC[kind][index]
    rng = np.random.default_rng(index)
    # Distinct values far apart keep max pooling away from its kinks (ties).
    x = rng.permutation(np.prod(config["shape"])).reshape(config["shape"]).astype(np.float64) * 0.1
    forward, backward = POOLS[kind][:2]
    out, cache = forward(x, **config["options"])
    r = rng.standard_normal(out.shape)
    numeric = numerical_gradient(lambda: float(np.sum(forward(x, **config["options"])[0] * r)), x)
    assert relative_error(backward(r, cache), numeric) < 1e-7


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "before", "after", "dilation", "expected"),
    [
        (4, 3, 2, 0, 0, 1, 2),  # floor would give 1; the second window covers the last row
        (5, 2, 2, 0, 0, 1, 3),  # a last window of one row
        (2, 1, 2, 0, 0, 1, 1),  # ceil((2 - 1) / 2) + 1 = 2, but window 1 would start at row 2, past the input
        (2, 3, 3, 1, 1, 1, 1),  # the second window would start in the bottom padding
        (5, 3, 3, 1, 0, 1, 2),  # window 1 starts at row 2 of the input
        (7, 2, 2, 0, 0, 2, 3),  # dilation: each window spans 3 rows
    ],
)
def test_ceil_mode_output_size_follows_torch(size, kernel, stride, before, after, dilation, expected):
    assert pooled_output_size(size, kernel, stride, before, after, dilation, True) == expected
    torch = pytest.importorskip("torch")
    if before == after:
        x = torch.zeros(1, 1, size, size)
        out = torch.nn.functional.max_pool2d(x, kernel, stride, before, dilation, ceil_mode=True)
        assert out.shape[-1] == expected


def test_a_ceil_window_averages_only_what_it_covers():
    """A 4x4 input, 3x3 windows at stride 2: the last windows hold 2x3, 3x2 and 2x2 inputs (ONNX's example)."""
    x = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    out, cache = avg_pool2d_forward(x, 3, stride=2, ceil_mode=True)
    np.testing.assert_allclose(out[0, 0], [[6.0, 7.5], [12.0, 13.5]])
    dx = avg_pool2d_backward(np.ones_like(out), cache)
    assert dx[0, 0, 3, 3] == pytest.approx(1 / 4)  # only the last window, of 2x2 inputs, reads it
    np.testing.assert_array_equal(window_counts(4, 3, 2, 0, 0, 2, True), [3, 2])


def test_count_include_pad_false_averages_the_input_only():
    x = np.ones((1, 1, 2, 2))
    out, _ = avg_pool2d_forward(x, 2, stride=2, padding=1, count_include_pad=False)
    np.testing.assert_array_equal(out, np.ones((1, 1, 2, 2)))
    out, _ = avg_pool2d_forward(x, 2, stride=1, padding=((1, 0), (0, 1)), count_include_pad=True)
    np.testing.assert_allclose(out[0, 0], [[0.5, 0.25], [1.0, 0.5]])


def test_max_pool_dilation_reads_spaced_entries():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    out, cache = max_pool2d_forward(x, 2, stride=1, dilation=2)
    np.testing.assert_array_equal(out[0, 0], [[10.0, 11.0], [14.0, 15.0]])
    dx = max_pool2d_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(np.argwhere(dx[0, 0]), [[2, 2], [2, 3], [3, 2], [3, 3]])


def test_default_options_keep_the_halving_fast_path():
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    assert max_pool2d_forward(x, 2)[1].argmax is None
    assert max_pool2d_forward(x, 2, ceil_mode=True)[1].argmax is None  # even sizes: nothing to round
    assert max_pool2d_forward(x, 2, stride=2, dilation=2)[1].argmax is not None
    assert max_pool2d_forward(x[:, :, :7, :7], 2, ceil_mode=True)[1].argmax is not None
    assert avg_pool2d_forward(x, 3, stride=2, padding=1)[1].divisor is None  # default: one divisor, KH*KW


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_float32_stays_float32(kind):
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 7))
    forward, backward = POOLS[kind][:2]
    extra = {"dilation": 2} if kind == "max" else {"count_include_pad": False}
    options = {"kernel_size": 3, "stride": 2, "padding": ((1, 0), (0, 1)), "ceil_mode": True, **extra}
    out64, cache64 = forward(x, **options)
    out32, cache32 = forward(x.astype(np.float32), **options)
    dout = np.ones(out64.shape)
    dx32 = backward(dout.astype(np.float32), cache32)
    assert out32.dtype == np.float32 and dx32.dtype == np.float32
    assert relative_error(out32, out64) < 1e-5
    assert relative_error(dx32, backward(dout, cache64)) < 1e-5


def test_option_errors_name_the_op():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="max_pool2d: dilation must be >= 1"):
        max_pool2d_forward(x, 2, dilation=0)
    with pytest.raises(ValueError, match=r"max_pool2d.*too small.*dilation=\(4, 4\)"):
        max_pool2d_forward(x, 2, dilation=4)
    with pytest.raises(ValueError, match="avg_pool2d.*at most half"):
        avg_pool2d_forward(x, 2, padding=((0, 2), (0, 0)))
    with pytest.raises(TypeError, match="avg_pool2d: padding"):
        avg_pool2d_forward(x, 2, padding=((0, 1.5), (0, 0)))
