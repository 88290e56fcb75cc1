"""linear_forward / linear_backward: hand values, finite differences, PyTorch, float32."""

import numpy as np
import pytest

from convnp.functional.linear import linear_backward, linear_forward
from tests.helpers import check_grad, rel_error

SHAPES = [(1, 1, 1), (1, 5, 3), (4, 5, 3), (7, 3, 6), (2, 9, 1)]  # (N, IN, OUT)


def make(shape, seed, dtype=np.float64):
    n, n_in, n_out = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in)).astype(dtype)
    weight = rng.standard_normal((n_out, n_in)).astype(dtype)
    bias = rng.standard_normal(n_out).astype(dtype)
    dout = rng.standard_normal((n, n_out)).astype(dtype)
    return x, weight, bias, dout


def test_hand_computed_values():
    x = np.array([[1.0, 2.0], [-1.0, 0.5]])
    weight = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    bias = np.array([0.0, 1.0, 2.0])
    out, cache = linear_forward(x, weight, bias)
    np.testing.assert_array_equal(out, [[1.0, 3.0, 5.0], [-1.0, 1.5, 1.5]])
    dx, dweight, dbias = linear_backward(np.ones((2, 3)), cache)
    np.testing.assert_array_equal(dx, [[2.0, 2.0], [2.0, 2.0]])
    np.testing.assert_array_equal(dweight, [[0.0, 2.5]] * 3)
    np.testing.assert_array_equal(dbias, [2.0, 2.0, 2.0])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("use_bias", [True, False])
def test_gradients_match_finite_differences(shape, use_bias):
    x, weight, bias, dout = make(shape, seed=sum(shape))
    bias = bias if use_bias else None
    _, cache = linear_forward(x, weight, bias)
    dx, dweight, dbias = linear_backward(dout, cache)

    def forward():
        return linear_forward(x, weight, bias)[0]

    check_grad(forward, x, dout, dx)
    check_grad(forward, weight, dout, dweight)
    if use_bias:
        check_grad(forward, bias, dout, dbias)
    else:
        assert dbias is None


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("use_bias", [True, False])
def test_matches_torch(seed, use_bias):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(100 + seed)
    shape = (int(rng.integers(1, 9)), int(rng.integers(1, 12)), int(rng.integers(1, 10)))
    x, weight, bias, dout = make(shape, seed)
    bias = bias if use_bias else None
    out, cache = linear_forward(x, weight, bias)
    dx, dweight, dbias = linear_backward(dout, cache)

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(weight, requires_grad=True)
    tb = torch.tensor(bias, requires_grad=True) if use_bias else None
    tout = torch.nn.functional.linear(tx, tw, tb)
    tout.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(dweight, tw.grad.numpy(), rtol=1e-8, atol=1e-12)
    if use_bias:
        np.testing.assert_allclose(dbias, tb.grad.numpy(), rtol=1e-8, atol=1e-12)


def test_float32_stays_float32_and_agrees_with_float64():
    x, weight, bias, dout = make((6, 7, 4), seed=3)
    out64, cache64 = linear_forward(x, weight, bias)
    grads64 = linear_backward(dout, cache64)
    x32, w32, b32, d32 = (a.astype(np.float32) for a in (x, weight, bias, dout))
    out32, cache32 = linear_forward(x32, w32, b32)
    grads32 = linear_backward(d32, cache32)
    assert out32.dtype == np.float32
    assert rel_error(out32, out64) < 1e-4
    for g32, g64 in zip(grads32, grads64, strict=True):
        assert g32.dtype == np.float32
        assert rel_error(g32, g64) < 1e-4


def test_bad_inputs_raise_errors_naming_the_function():
    x, weight, bias, _ = make((2, 3, 4), seed=0)
    with pytest.raises(ValueError, match="linear_forward.*weight"):
        linear_forward(x, weight[:, :2], bias)
    with pytest.raises(ValueError, match="linear_forward.*x must have shape"):
        linear_forward(x.reshape(2, 3, 1), weight)
    with pytest.raises(ValueError, match="linear_forward.*bias"):
        linear_forward(x, weight, bias[:3])
    with pytest.raises(TypeError, match="linear_forward.*dtype"):
        linear_forward(x.astype(np.float32), weight)
    with pytest.raises(TypeError, match="linear_forward.*floating"):
        linear_forward(np.ones((2, 3), dtype=np.int64), weight)
    _, cache = linear_forward(x, weight, bias)
    with pytest.raises(ValueError, match="linear_backward.*dout"):
        linear_backward(np.ones((2, 5)), cache)
