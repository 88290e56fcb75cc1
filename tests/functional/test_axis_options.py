"""Softmax along any axis and layer norm over any trailing axes: PyTorch, finite differences, edge cases."""

import numpy as np
import pytest

from convnp.functional.activations import softmax_backward, softmax_forward
from convnp.functional.normalization import layer_norm_backward, layer_norm_forward
from convnp.gradcheck import numerical_gradient, relative_error

SHAPES = [(4,), (3, 5), (2, 3, 4), (2, 3, 4, 5)]
SOFTMAX_CASES = [(shape, axis) for shape in SHAPES for axis in range(-len(shape), len(shape))]
LAYER_NORM_CASES = [(shape, axis) for shape in SHAPES[1:] for axis in range(-len(shape), len(shape))]


def case_id(case) -> str:
    shape, axis = case
    return f"{'x'.join(map(str, shape))}-axis{axis}"


@pytest.mark.parametrize("case", SOFTMAX_CASES, ids=case_id)
def test_softmax_matches_torch_on_every_axis(case):
    torch = pytest.importorskip("torch")
    shape, axis = case
    rng = np.random.default_rng(len(shape) * 10 + axis)
    x, dout = rng.standard_normal(shape) * 3, rng.standard_normal(shape)
    out, cache = softmax_forward(x, axis=axis)
    dx = softmax_backward(dout, cache)
    x_t = torch.tensor(x, requires_grad=True)
    out_t = torch.softmax(x_t, dim=axis)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(out.sum(axis=axis), 1.0, rtol=1e-14)


@pytest.mark.parametrize("axis", [0, 2, -1])
def test_softmax_finite_differences(axis):
    rng = np.random.default_rng(axis + 5)
    x, r = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    out, cache = softmax_forward(x, axis=axis)
    numeric = numerical_gradient(lambda: float(np.sum(softmax_forward(x, axis=axis)[0] * r)), x)
    assert relative_error(softmax_backward(r, cache), numeric) < 1e-7


def test_softmax_on_the_last_axis_is_stable_per_slice():
    x = np.array([[[0.0, 1.0], [-1000.0, -999.0]]], dtype=np.float32)
    out, _ = softmax_forward(x, axis=-1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 1], out[0, 0], rtol=1e-6)


def test_softmax_default_axis_is_one():
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    np.testing.assert_array_equal(softmax_forward(x)[0], softmax_forward(x, axis=1)[0])
    np.testing.assert_array_equal(softmax_forward(x)[0], softmax_forward(x, axis=-2)[0])


@pytest.mark.parametrize("case", LAYER_NORM_CASES, ids=case_id)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_torch_over_any_trailing_axes(case, affine):
    torch = pytest.importorskip("torch")
    shape, begin_axis = case
    rng = np.random.default_rng(len(shape) * 10 + begin_axis)
    slice_shape = shape[begin_axis:]
    x, dout = rng.standard_normal(shape) * 2 + 0.5, rng.standard_normal(shape)
    weight = rng.uniform(0.5, 1.5, slice_shape) if affine else None
    bias = rng.standard_normal(slice_shape) if affine else None
    out, cache = layer_norm_forward(x, weight, bias, eps=1e-3, begin_axis=begin_axis)
    dx, dweight, dbias = layer_norm_backward(dout, cache)
    x_t = torch.tensor(x, requires_grad=True)
    w_t = torch.tensor(weight, requires_grad=True) if affine else None
    b_t = torch.tensor(bias, requires_grad=True) if affine else None
    out_t = torch.nn.functional.layer_norm(x_t, slice_shape, w_t, b_t, eps=1e-3)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-9, atol=1e-11)
    if affine:
        np.testing.assert_allclose(dweight, w_t.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dbias, b_t.grad.numpy(), rtol=1e-10, atol=1e-12)
    else:
        assert dweight is None and dbias is None


@pytest.mark.parametrize("begin_axis", [0, 2, -1])
def test_layer_norm_finite_differences(begin_axis):
    rng = np.random.default_rng(begin_axis + 7)
    shape = (2, 3, 4)
    x, r = rng.standard_normal(shape), rng.standard_normal(shape)
    weight, bias = rng.uniform(0.5, 1.5, shape[begin_axis:]), rng.standard_normal(shape[begin_axis:])
    out, cache = layer_norm_forward(x, weight, bias, begin_axis=begin_axis)
    dx, dweight, dbias = layer_norm_backward(r, cache)

    def loss() -> float:
        return float(np.sum(layer_norm_forward(x, weight, bias, begin_axis=begin_axis)[0] * r))

    assert relative_error(dx, numerical_gradient(loss, x)) < 1e-7
    assert relative_error(dweight, numerical_gradient(loss, weight)) < 1e-7
    assert relative_error(dbias, numerical_gradient(loss, bias)) < 1e-7


def test_layer_norm_default_normalises_each_sample():
    x = np.random.default_rng(1).standard_normal((3, 2, 4)).astype(np.float32)
    out, _ = layer_norm_forward(x, None, None)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.reshape(3, -1).mean(axis=1), 0.0, atol=1e-6)
    np.testing.assert_array_equal(out, layer_norm_forward(x, None, None, begin_axis=-2)[0])


def test_axis_errors_name_the_op():
    with pytest.raises(ValueError, match="softmax_forward: axis 3 is out of range for x of shape"):
        softmax_forward(np.ones((2, 3, 4)), axis=3)
    with pytest.raises(TypeError, match="softmax_forward: axis"):
        softmax_forward(np.ones((2, 3)), axis=1.0)
    with pytest.raises(ValueError, match="layer_norm_forward: begin_axis -4 is out of range"):
        layer_norm_forward(np.ones((2, 3, 4)), None, None, begin_axis=-4)
    with pytest.raises(ValueError, match=r"layer_norm_forward: weight must have shape \(4,\)"):
        layer_norm_forward(np.ones((2, 3, 4)), np.ones((3, 4)), None, begin_axis=2)
