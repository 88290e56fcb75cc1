"""The loop-based reference ops (convnp.functional.naive) against the fast path and PyTorch.

Three oracles meet here: the naive loops must equal the im2col/strided fast ops
(forward and every gradient, float64, rtol 1e-10) on a seeded grid of
configurations, equal PyTorch on a subset, and equal finite differences on a
few. Tensors are kept small so the Python loops stay quick.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from convnp.functional import conv as fast_conv
from convnp.functional import naive
from convnp.functional import pooling as fast_pool
from convnp.functional.geometry import normalize_padding, pair
from convnp.gradcheck import numerical_gradient

RTOL = 1e-10
ATOL = 1e-12


def assert_close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------- conv2d grid

PADDING_CHOICES = [0, 1, 2, "same", (0, 2), (2, 1), "valid"]


def random_conv_case(seed: int) -> dict:
    """A small, valid conv2d configuration drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    groups = int(rng.integers(1, 3))
    kernel = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    padding = PADDING_CHOICES[int(rng.integers(len(PADDING_CHOICES)))]
    if isinstance(padding, str):
        pad_hw = (0, 0)
    else:
        pad_hw = pair(padding, "padding", minimum=0)
    # Smallest input that still gives one output row/column, then a few more.
    sizes = []
    for axis in range(2):
        span = dilation[axis] * (kernel[axis] - 1) + 1
        needed = 1 if padding == "same" else span - 2 * pad_hw[axis]
        sizes.append(max(needed, 1) + int(rng.integers(0, 6)))
    return {
        "batch": int(rng.integers(1, 4)),
        "channels": groups * int(rng.integers(1, 3)),
        "filters": groups * int(rng.integers(1, 3)),
        "hw": tuple(sizes),
        "kernel": kernel,
        # Half of the cases pass plain ints where the pair is square.
        "stride": stride[0] if stride[0] == stride[1] and seed % 2 else stride,
        "padding": padding,
        "dilation": dilation[0] if dilation[0] == dilation[1] and seed % 2 else dilation,
        "groups": groups,
        "bias": bool(rng.integers(0, 2)),
    }


# Hand-picked corners on top of the random grid.
EXTRA_CONV_CASES = [
    {
        "batch": 1,
        "channels": 1,
        "filters": 1,
        "hw": (4, 4),
        "kernel": (2, 2),
        "stride": 1,
        "padding": 1,
        "dilation": 1,
        "groups": 1,
        "bias": True,
    },
    {
        "batch": 2,
        "channels": 2,
        "filters": 4,
        "hw": (7, 9),
        "kernel": (5, 5),
        "stride": 2,
        "padding": 2,
        "dilation": 1,
        "groups": 2,
        "bias": True,
    },
    {
        "batch": 1,
        "channels": 2,
        "filters": 2,
        "hw": (9, 7),
        "kernel": (3, 5),
        "stride": (3, 1),
        "padding": "same",
        "dilation": (2, 1),
        "groups": 1,
        "bias": False,
    },
    {
        "batch": 3,
        "channels": 4,
        "filters": 2,
        "hw": (5, 5),
        "kernel": (1, 1),
        "stride": 3,
        "padding": 0,
        "dilation": 1,
        "groups": 2,
        "bias": True,
    },
    {
        "batch": 1,
        "channels": 3,
        "filters": 2,
        "hw": (6, 8),
        "kernel": (4, 2),
        "stride": 1,
        "padding": "same",
        "dilation": 2,
        "groups": 1,
        "bias": True,
    },
    {
        "batch": 2,
        "channels": 2,
        "filters": 2,
        "hw": (5, 5),
        "kernel": (5, 5),
        "stride": 1,
        "padding": "valid",
        "dilation": 1,
        "groups": 2,
        "bias": False,
    },
]

CONV_CASES = [random_conv_case(seed) for seed in range(64)] + EXTRA_CONV_CASES
CONV_IDS = [f"conv{i}" for i in range(len(CONV_CASES))]


def conv_tensors(case: dict, seed: int, dtype=np.float64):
    rng = np.random.default_rng(10_000 + seed)
    x = rng.standard_normal((case["batch"], case["channels"], *case["hw"])).astype(dtype)
    weight = rng.standard_normal((case["filters"], case["channels"] // case["groups"], *case["kernel"])).astype(dtype)
    bias = rng.standard_normal(case["filters"]).astype(dtype) if case["bias"] else None
    return x, weight, bias, rng


def conv_kwargs(case: dict) -> dict:
    return {key: case[key] for key in ("stride", "padding", "dilation", "groups")}


def test_conv_grid_covers_what_it_claims():
    def as_pair(value):
        return pair(value, "value")

    kernels = {k for case in CONV_CASES for k in case["kernel"]}
    assert kernels == {1, 2, 3, 4, 5}
    assert any(case["kernel"][0] != case["kernel"][1] for case in CONV_CASES)
    assert {s for case in CONV_CASES for s in as_pair(case["stride"])} == {1, 2, 3}
    assert {d for case in CONV_CASES for d in as_pair(case["dilation"])} == {1, 2}
    assert {case["groups"] for case in CONV_CASES} == {1, 2}
    assert {case["bias"] for case in CONV_CASES} == {True, False}
    assert {case["batch"] for case in CONV_CASES} == {1, 2, 3}
    paddings = {case["padding"] if isinstance(case["padding"], (int, str)) else "pair" for case in CONV_CASES}
    assert {0, 1, 2, "same", "valid", "pair"} <= paddings
    assert any(case["hw"][0] % 2 and case["hw"][1] % 2 for case in CONV_CASES)
    assert any(case["hw"][0] != case["hw"][1] for case in CONV_CASES)
    assert len(CONV_CASES) >= 60


@pytest.mark.parametrize("index", range(len(CONV_CASES)), ids=CONV_IDS)
def test_naive_conv2d_equals_fast(index):
    case = CONV_CASES[index]
    x, weight, bias, rng = conv_tensors(case, index)

    out_naive, cache_naive = naive.conv2d_forward(x, weight, bias, **conv_kwargs(case))
    out_fast, cache_fast = fast_conv.conv2d_forward(x, weight, bias, **conv_kwargs(case))
    assert out_naive.shape == out_fast.shape
    assert_close(out_naive, out_fast)
    if case["padding"] == "same":
        strides = pair(case["stride"], "stride")
        assert out_naive.shape[2:] == tuple(math.ceil(size / s) for size, s in zip(case["hw"], strides, strict=True))

    dout = rng.standard_normal(out_naive.shape)
    grads_naive = naive.conv2d_backward(dout, cache_naive)
    grads_fast = fast_conv.conv2d_backward(dout, cache_fast)
    for name, grad_naive, grad_fast in zip(("dx", "dweight", "dbias"), grads_naive, grads_fast, strict=True):
        if case["bias"] or name != "dbias":
            assert grad_naive.shape == grad_fast.shape, name
            assert_close(grad_naive, grad_fast)
        else:
            assert grad_naive is None and grad_fast is None


def torch_conv2d(torch, x, weight, bias, case):
    """PyTorch's conv2d, with autograd on every input; padding applied the torch way."""
    functional = torch.nn.functional
    stride, dilation = pair(case["stride"], "s"), pair(case["dilation"], "d")
    x_t = torch.tensor(x, requires_grad=True)
    weight_t = torch.tensor(weight, requires_grad=True)
    bias_t = torch.tensor(bias, requires_grad=True) if bias is not None else None
    if case["padding"] == "same" and stride == (1, 1):
        # Let PyTorch resolve "same" itself: checks convnp's split of odd totals.
        out_t = functional.conv2d(x_t, weight_t, bias_t, 1, "same", dilation, case["groups"])
    else:
        top, bottom, left, right = normalize_padding(case["padding"], case["kernel"], stride, dilation, case["hw"])
        x_padded_t = functional.pad(x_t, (left, right, top, bottom))
        out_t = functional.conv2d(x_padded_t, weight_t, bias_t, stride, 0, dilation, case["groups"])
    return out_t, x_t, weight_t, bias_t


TORCH_CONV_INDICES = list(range(0, len(CONV_CASES), 3))


@pytest.mark.parametrize("index", TORCH_CONV_INDICES, ids=[CONV_IDS[i] for i in TORCH_CONV_INDICES])
def test_naive_conv2d_equals_torch(index):
    torch = pytest.importorskip("torch")
    case = CONV_CASES[index]
    x, weight, bias, rng = conv_tensors(case, index)
    out, cache = naive.conv2d_forward(x, weight, bias, **conv_kwargs(case))
    dout = rng.standard_normal(out.shape)
    dx, dweight, dbias = naive.conv2d_backward(dout, cache)

    out_t, x_t, weight_t, bias_t = torch_conv2d(torch, x, weight, bias, case)
    out_t.backward(torch.tensor(dout))
    assert_close(out, out_t.detach().numpy())
    assert_close(dx, x_t.grad.numpy())
    assert_close(dweight, weight_t.grad.numpy())
    if bias is not None:
        assert_close(dbias, bias_t.grad.numpy())


@pytest.mark.parametrize("index", [1, 7, 64, 65])
def test_naive_conv2d_equals_finite_differences(index):
    case = CONV_CASES[index]
    x, weight, bias, rng = conv_tensors(case, index)
    out, cache = naive.conv2d_forward(x, weight, bias, **conv_kwargs(case))
    probe = rng.standard_normal(out.shape)  # loss = sum(out * probe), so dout = probe
    dx, dweight, dbias = naive.conv2d_backward(probe, cache)

    def loss() -> float:
        return float(np.sum(naive.conv2d_forward(x, weight, bias, **conv_kwargs(case))[0] * probe))

    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dweight, numerical_gradient(loss, weight), rtol=1e-6, atol=1e-8)
    if bias is not None:
        np.testing.assert_allclose(dbias, numerical_gradient(loss, bias), rtol=1e-6, atol=1e-8)


def test_naive_conv2d_keeps_float32():
    case = CONV_CASES[65]
    x, weight, bias, rng = conv_tensors(case, 65, dtype=np.float32)
    out, cache = naive.conv2d_forward(x, weight, bias, **conv_kwargs(case))
    grads = naive.conv2d_backward(rng.standard_normal(out.shape).astype(np.float32), cache)
    assert out.dtype == np.float32
    assert all(grad.dtype == np.float32 for grad in grads)
    x64, weight64, bias64 = (array.astype(np.float64) for array in (x, weight, bias))
    out64, _ = naive.conv2d_forward(x64, weight64, bias64, **conv_kwargs(case))
    np.testing.assert_allclose(out, out64, rtol=1e-5, atol=1e-5)


def test_naive_conv2d_rejects_an_input_too_small_for_the_kernel():
    x = np.zeros((1, 1, 3, 3))
    weight = np.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match="naive conv2d"):
        naive.conv2d_forward(x, weight, dilation=2)


def test_naive_conv2d_rejects_channels_that_do_not_fit_groups():
    with pytest.raises(ValueError, match="groups"):
        naive.conv2d_forward(np.zeros((1, 3, 4, 4)), np.zeros((2, 1, 2, 2)), groups=2)


# --------------------------------------------------------------------------- pooling grid

POOL_PADDINGS = [0, 1, (1, 0), (0, 1), "same", "valid", 2]


def random_pool_case(seed: int) -> dict:
    """A small, valid pooling configuration drawn from ``seed``; many overlap."""
    rng = np.random.default_rng(50_000 + seed)
    kernel = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    stride_choice = int(rng.integers(0, 4))
    stride = None if stride_choice == 0 else (stride_choice, int(rng.integers(1, 4)))
    allowed = [
        padding
        for padding in POOL_PADDINGS
        if isinstance(padding, str)
        or all(p <= k // 2 for p, k in zip(pair(padding, "p", minimum=0), kernel, strict=True))
    ]
    padding = allowed[int(rng.integers(len(allowed)))]
    hw = tuple(k + int(rng.integers(0, 6)) for k in kernel)
    return {
        "shape": (int(rng.integers(1, 4)), int(rng.integers(1, 4)), *hw),
        "kernel": kernel if kernel[0] != kernel[1] or seed % 2 else kernel[0],
        "stride": stride,
        "padding": padding,
        "ties": bool(seed % 2),  # odd seeds: integer inputs with many tied maxima
    }


EXTRA_POOL_CASES = [
    # The classic 2x2/2 pool, and a 3x3/1 pool whose windows overlap heavily.
    {"shape": (1, 1, 4, 4), "kernel": 2, "stride": None, "padding": 0, "ties": False},
    {"shape": (2, 2, 5, 5), "kernel": 3, "stride": 1, "padding": 1, "ties": True},
    {"shape": (1, 2, 7, 6), "kernel": (3, 2), "stride": (2, 1), "padding": "same", "ties": True},
]

POOL_CASES = [random_pool_case(seed) for seed in range(36)] + EXTRA_POOL_CASES
POOL_IDS = [f"pool{i}" for i in range(len(POOL_CASES))]
POOL_OPS = {
    "max": (
        naive.max_pool2d_forward,
        naive.max_pool2d_backward,
        fast_pool.max_pool2d_forward,
        fast_pool.max_pool2d_backward,
    ),
    "avg": (
        naive.avg_pool2d_forward,
        naive.avg_pool2d_backward,
        fast_pool.avg_pool2d_forward,
        fast_pool.avg_pool2d_backward,
    ),
}


def pool_input(case: dict, seed: int):
    rng = np.random.default_rng(90_000 + seed)
    if case["ties"]:
        x = rng.integers(0, 3, case["shape"]).astype(np.float64)
    else:
        x = rng.standard_normal(case["shape"])
    return x, rng


def test_pool_grid_covers_what_it_claims():
    assert len(POOL_CASES) >= 30
    assert sum(case["ties"] for case in POOL_CASES) >= 15
    overlapping = 0
    for case in POOL_CASES:
        kernel = pair(case["kernel"], "k")
        stride = kernel if case["stride"] is None else pair(case["stride"], "s")
        overlapping += stride[0] < kernel[0] or stride[1] < kernel[1]
    assert overlapping >= 10
    assert any(case["stride"] is None for case in POOL_CASES)
    string_paddings = {case["padding"] for case in POOL_CASES if isinstance(case["padding"], str)}
    assert string_paddings == {"same", "valid"}
    assert any(case["padding"] not in (0, "valid") for case in POOL_CASES)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("index", range(len(POOL_CASES)), ids=POOL_IDS)
def test_naive_pooling_equals_fast(kind, index):
    case = POOL_CASES[index]
    naive_forward, naive_backward, fast_forward, fast_backward = POOL_OPS[kind]
    x, rng = pool_input(case, index)
    args = (case["kernel"], case["stride"], case["padding"])

    out_naive, cache_naive = naive_forward(x, *args)
    out_fast, cache_fast = fast_forward(x, *args)
    assert out_naive.shape == out_fast.shape
    assert_close(out_naive, out_fast)

    dout = rng.standard_normal(out_naive.shape)
    assert_close(naive_backward(dout, cache_naive), fast_backward(dout, cache_fast))


def torch_pool(torch, kind, x_t, case):
    """PyTorch's pooling; symmetric padding is passed to torch, the rest padded explicitly."""
    functional = torch.nn.functional
    kernel = pair(case["kernel"], "k")
    stride = kernel if case["stride"] is None else case["stride"]
    top, bottom, left, right = normalize_padding(case["padding"], kernel, stride, (1, 1), case["shape"][2:])
    torch_op = functional.max_pool2d if kind == "max" else functional.avg_pool2d
    if top == bottom and left == right:
        return torch_op(x_t, kernel, stride, (top, left))
    fill = -math.inf if kind == "max" else 0.0  # zeros count in the average either way
    x_padded_t = functional.pad(x_t, (left, right, top, bottom), value=fill)
    return torch_op(x_padded_t, kernel, stride, 0)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("index", range(0, len(POOL_CASES), 2), ids=POOL_IDS[::2])
def test_naive_pooling_equals_torch(kind, index):
    torch = pytest.importorskip("torch")
    case = POOL_CASES[index]
    naive_forward, naive_backward, _, _ = POOL_OPS[kind]
    x, rng = pool_input(case, index)
    out, cache = naive_forward(x, case["kernel"], case["stride"], case["padding"])
    dout = rng.standard_normal(out.shape)
    dx = naive_backward(dout, cache)

    x_t = torch.tensor(x, requires_grad=True)
    out_t = torch_pool(torch, kind, x_t, case)
    out_t.backward(torch.tensor(dout))
    assert_close(out, out_t.detach().numpy())
    assert_close(dx, x_t.grad.numpy())


def test_naive_max_pool_gives_a_tied_window_its_gradient_once_to_the_first_maximum():
    x = np.array([[[[5.0, 5.0], [5.0, 5.0]]]])
    out, cache = naive.max_pool2d_forward(x, 2)
    dx = naive.max_pool2d_backward(np.array([[[[3.0]]]]), cache)
    assert out[0, 0, 0, 0] == 5.0
    np.testing.assert_array_equal(dx[0, 0], [[3.0, 0.0], [0.0, 0.0]])


def test_naive_max_pool_accumulates_over_overlapping_windows():
    # The 9 in the centre is the maximum of all four 2x2 windows (stride 1).
    x = np.array([[[[1.0, 2.0, 3.0], [4.0, 9.0, 5.0], [6.0, 7.0, 8.0]]]])
    out, cache = naive.max_pool2d_forward(x, 2, stride=1)
    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx = naive.max_pool2d_backward(dout, cache)
    np.testing.assert_array_equal(out[0, 0], [[9.0, 9.0], [9.0, 9.0]])
    np.testing.assert_array_equal(dx[0, 0], [[0, 0, 0], [0, 10.0, 0], [0, 0, 0]])


def test_naive_avg_pool_counts_padding_zeros():
    x = np.ones((1, 1, 2, 2))
    out, cache = naive.avg_pool2d_forward(x, 2, stride=2, padding=1)
    # Every 2x2 window holds one real 1 and three padding zeros.
    np.testing.assert_array_equal(out[0, 0], np.full((2, 2), 0.25))
    dx = naive.avg_pool2d_backward(np.ones((1, 1, 2, 2)), cache)
    np.testing.assert_array_equal(dx[0, 0], np.full((2, 2), 0.25))


def test_naive_pooling_rejects_padding_larger_than_half_the_kernel():
    with pytest.raises(ValueError, match="half the kernel"):
        naive.max_pool2d_forward(np.zeros((1, 1, 4, 4)), 2, padding=2)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_naive_pooling_keeps_float32(kind):
    naive_forward, naive_backward, _, _ = POOL_OPS[kind]
    x = np.random.default_rng(3).standard_normal((2, 2, 5, 5)).astype(np.float32)
    out, cache = naive_forward(x, 3, 2, 1)
    dx = naive_backward(np.ones_like(out), cache)
    assert out.dtype == np.float32 and dx.dtype == np.float32


def test_naive_global_avg_pool_equals_fast():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, 5, 4))
    out_naive, cache_naive = naive.global_avg_pool2d_forward(x)
    out_fast, cache_fast = fast_pool.global_avg_pool2d_forward(x)
    assert_close(out_naive, out_fast)
    dout = rng.standard_normal(out_naive.shape)
    assert_close(
        naive.global_avg_pool2d_backward(dout, cache_naive),
        fast_pool.global_avg_pool2d_backward(dout, cache_fast),
    )


def test_naive_max_pool_propagates_nan_like_the_fast_path_and_torch():
    x = np.array([[[[1.0, np.nan], [3.0, 2.0]], [[np.nan, 4.0], [np.nan, 0.0]]]])
    out, cache = naive.max_pool2d_forward(x, 2)
    assert np.isnan(out).all()
    out_fast, cache_fast = fast_pool.max_pool2d_forward(x, 2)
    np.testing.assert_array_equal(out, out_fast)
    dout = np.array([[[[2.0]], [[5.0]]]])
    dx = naive.max_pool2d_backward(dout, cache)
    # The gradient goes to the last NaN of each window, as in PyTorch.
    np.testing.assert_array_equal(dx[0], [[[0, 2.0], [0, 0]], [[0, 0], [5.0, 0]]])
    np.testing.assert_array_equal(dx, fast_pool.max_pool2d_backward(dout, cache_fast))
