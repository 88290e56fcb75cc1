"""Activation pairs: hand values, finite differences, PyTorch, float32, extreme inputs."""

import warnings

import numpy as np
import pytest

from convnp.functional import activations as A
from tests.helpers import check_grad, rel_error

# name -> (forward, backward, kwargs, torch function of (torch module, tensor))
OPS = {
    "relu": (A.relu_forward, A.relu_backward, {}, lambda t, x: t.relu(x)),
    "leaky_relu": (
        A.leaky_relu_forward,
        A.leaky_relu_backward,
        {"alpha": 0.2},
        lambda t, x: t.nn.functional.leaky_relu(x, 0.2),
    ),
    "leaky_relu_default": (
        A.leaky_relu_forward,
        A.leaky_relu_backward,
        {},
        lambda t, x: t.nn.functional.leaky_relu(x, 0.01),
    ),
    "elu": (A.elu_forward, A.elu_backward, {}, lambda t, x: t.nn.functional.elu(x)),
    "elu_alpha": (
        A.elu_forward,
        A.elu_backward,
        {"alpha": 0.5},
        lambda t, x: t.nn.functional.elu(x, alpha=0.5),
    ),
    "sigmoid": (A.sigmoid_forward, A.sigmoid_backward, {}, lambda t, x: t.sigmoid(x)),
    "tanh": (A.tanh_forward, A.tanh_backward, {}, lambda t, x: t.tanh(x)),
    "gaussian": (A.gaussian_forward, A.gaussian_backward, {}, lambda t, x: t.exp(-x * x)),
    "softmax": (A.softmax_forward, A.softmax_backward, {}, lambda t, x: t.softmax(x, dim=1)),
}
SHAPES = [(1, 1), (1, 5), (4, 3), (3, 2, 3, 5), (2, 7, 1, 1)]


def make(shape, seed, dtype=np.float64):
    """Inputs in +-[0.1, 2.5]: away from the kink at 0 so central differences are exact."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 2.5, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    dout = rng.standard_normal(shape)
    return x.astype(dtype), dout.astype(dtype)


def test_hand_computed_values():
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 2.0]])
    np.testing.assert_array_equal(A.relu_forward(x)[0], [[0.0, 0.0, 0.0, 0.5, 2.0]])
    np.testing.assert_allclose(A.leaky_relu_forward(x, 0.1)[0], [[-0.2, -0.05, 0.0, 0.5, 2.0]])
    np.testing.assert_allclose(A.elu_forward(x)[0][0, :2], np.exp([-2.0, -0.5]) - 1)
    np.testing.assert_allclose(A.sigmoid_forward(x)[0], 1 / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(A.gaussian_forward(x)[0], np.exp(-(x**2)), rtol=1e-15)
    np.testing.assert_allclose(A.tanh_forward(x)[0], np.tanh(x), rtol=1e-15)
    # Softmax of (0, log 2, log 3) puts 1/6, 2/6, 3/6 on them.
    out, _ = A.softmax_forward(np.log([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(out, [[1 / 6, 2 / 6, 3 / 6]], rtol=1e-14)


def test_gradient_at_zero_follows_pytorch():
    x = np.zeros((1, 3))
    dout = np.ones((1, 3))
    np.testing.assert_array_equal(A.relu_backward(dout, A.relu_forward(x)[1]), 0.0)
    leaky = A.leaky_relu_backward(dout, A.leaky_relu_forward(x, 0.3)[1])
    np.testing.assert_allclose(leaky, 0.3)
    np.testing.assert_allclose(A.elu_backward(dout, A.elu_forward(x, 0.7)[1]), 0.7)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("shape", SHAPES)
def test_gradients_match_finite_differences(name, shape):
    forward, backward, kwargs, _ = OPS[name]
    x, dout = make(shape, seed=len(name) + sum(shape))
    out, cache = forward(x, **kwargs)
    dx = backward(dout, cache)
    check_grad(lambda: forward(x, **kwargs)[0], x, dout, dx)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("seed", range(4))
def test_matches_torch(name, seed):
    torch = pytest.importorskip("torch")
    forward, backward, kwargs, torch_fn = OPS[name]
    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in rng.integers(1, 6, size=int(rng.integers(2, 5))))
    x = rng.standard_normal(shape) * 3
    dout = rng.standard_normal(shape)
    out, cache = forward(x, **kwargs)
    dx = backward(dout, cache)
    tx = torch.tensor(x, requires_grad=True)
    tout = torch_fn(torch, tx)
    tout.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("name", OPS)
def test_float32_stays_float32_and_agrees_with_float64(name):
    forward, backward, kwargs, _ = OPS[name]
    x, dout = make((4, 6, 3), seed=7)
    out64, cache64 = forward(x, **kwargs)
    dx64 = backward(dout, cache64)
    out32, cache32 = forward(x.astype(np.float32), **kwargs)
    dx32 = backward(dout.astype(np.float32), cache32)
    assert out32.dtype == np.float32 and dx32.dtype == np.float32
    assert rel_error(out32, out64) < 1e-4
    assert rel_error(dx32, dx64) < 1e-4


def test_numpy_float64_alpha_does_not_promote_float32():
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    pairs = [(A.leaky_relu_forward, A.leaky_relu_backward), (A.elu_forward, A.elu_backward)]
    for forward, backward in pairs:
        out, cache = forward(x, np.float64(0.3))
        assert out.dtype == np.float32
        assert backward(np.ones_like(x), cache).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_stay_finite_without_warnings(dtype):
    x = np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]], dtype=dtype)
    dout = np.ones_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any overflow warning fails the test
        sig, sig_cache = A.sigmoid_forward(x)
        dsig = A.sigmoid_backward(dout, sig_cache)
        elu, elu_cache = A.elu_forward(x)
        delu = A.elu_backward(dout, elu_cache)
        gauss, gauss_cache = A.gaussian_forward(x)
        dgauss = A.gaussian_backward(dout, gauss_cache)
        soft, soft_cache = A.softmax_forward(x)
        dsoft = A.softmax_backward(dout, soft_cache)
        log_soft = A.log_softmax(x)
    for array in (sig, dsig, elu, delu, gauss, dgauss, soft, dsoft, log_soft):
        assert array.dtype == dtype
        assert np.all(np.isfinite(array))
    np.testing.assert_array_equal(sig[0, [0, 2, 4]], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(elu[0, [0, 4]], [-1.0, 1e4])
    np.testing.assert_array_equal(soft, [[0.0, 0.0, 0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(log_soft[0, [0, 4]], [-2e4, 0.0])


def test_softmax_subtracts_each_rows_own_max():
    # A global max would underflow the second row to 0 / 0.
    x = np.array([[0.0, 1.0], [-1000.0, -999.0]])
    out, _ = A.softmax_forward(x)
    np.testing.assert_allclose(out[1], out[0], rtol=1e-15)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_softmax_normalises_channels_of_image_batches():
    x, _ = make((2, 3, 4, 5), seed=1)
    out, _ = A.softmax_forward(x)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.exp(A.log_softmax(x)), out, rtol=1e-13)


def test_bad_inputs_raise_errors_naming_the_function():
    with pytest.raises(TypeError, match="relu_forward.*floating"):
        A.relu_forward(np.arange(3))
    with pytest.raises(TypeError, match="leaky_relu_forward.*alpha"):
        A.leaky_relu_forward(np.ones(3), alpha="big")
    with pytest.raises(ValueError, match="softmax_forward.*shape"):
        A.softmax_forward(np.ones(3))
    _, cache = A.tanh_forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="tanh_backward.*dout"):
        A.tanh_backward(np.ones((2, 1)), cache)  # would broadcast silently


# ------------------------------------------------------- relu in place, add + relu
def test_relu_in_place_overwrites_x_and_backs_off_the_same_mask():
    x = np.random.default_rng(10).standard_normal((3, 4, 5))
    expected, cache = A.relu_forward(x.copy())
    out, out_cache = A.relu_forward(x, in_place=True)
    assert out is x and out_cache is x
    np.testing.assert_array_equal(out, expected)
    dout = np.random.default_rng(11).standard_normal(x.shape)
    np.testing.assert_array_equal(A.relu_backward(dout, out_cache), A.relu_backward(dout, cache))


@pytest.fixture(params=["one piece", "one image per chunk", "three slices"])
def cutting(request, monkeypatch):
    from convnp.backend import batched, threads

    saved = threads.get_num_threads()
    if request.param == "one image per chunk":
        monkeypatch.setattr(batched, "CHUNK_BYTES", 1)
    elif request.param == "three slices":
        monkeypatch.setattr(threads, "MIN_ELEMENTS", 0)
        threads.set_num_threads(3)
    yield request.param
    threads.set_num_threads(saved)


@pytest.mark.parametrize("seed", range(12))
def test_add_relu_equals_the_sum_then_relu_exactly(cutting, seed):
    from convnp.functional import naive

    rng = np.random.default_rng(seed)
    count = int(rng.integers(2, 5))
    shape = (int(rng.integers(1, 8)), *(int(d) for d in rng.integers(1, 6, size=int(rng.integers(0, 4)))))
    dtype = np.float32 if seed % 3 == 0 else np.float64
    inputs = [rng.standard_normal(shape).astype(dtype) for _ in range(count)]
    if len(shape) == 4:  # channels-last memory, as convolutions and batch norm give
        inputs = [np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2) for x in inputs]
    out, cache = A.add_relu_forward(inputs)
    expected, expected_cache = naive.add_relu_forward(inputs)
    np.testing.assert_array_equal(out, expected)  # the same additions in the same order
    assert out.dtype == dtype and out.strides == inputs[0].strides
    dout = rng.standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(A.add_relu_backward(dout, cache), naive.add_relu_backward(dout, expected_cache))


def test_add_relu_gradients_match_finite_differences_and_torch():
    rng = np.random.default_rng(12)
    a, b = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((3, 2, 3, 3))
    dout = rng.standard_normal(a.shape)
    out, cache = A.add_relu_forward([a, b])
    grad = A.add_relu_backward(dout, cache)
    assert 0 < np.count_nonzero(out) < out.size
    for x in (a, b):
        check_grad(lambda: A.add_relu_forward([a, b])[0], x, dout, grad)
    torch = pytest.importorskip("torch")
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    expected = torch.relu(ta + tb)
    expected.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-15)
    np.testing.assert_allclose(grad, ta.grad.numpy(), rtol=1e-15)
    np.testing.assert_allclose(grad, tb.grad.numpy(), rtol=1e-15)


def test_add_relu_bad_inputs():
    x = np.zeros((2, 3))
    with pytest.raises(TypeError, match="add_relu_forward.*at least two"):
        A.add_relu_forward([x])
    with pytest.raises(ValueError, match="add_relu_forward.*one shape"):
        A.add_relu_forward([x, np.zeros((2, 4))])
    with pytest.raises(ValueError, match="add_relu_forward.*dtype"):
        A.add_relu_forward([x, x.astype(np.float32)])
    with pytest.raises(ValueError, match="add_relu_backward.*dout"):
        A.add_relu_backward(np.zeros((2, 4)), A.add_relu_forward([x, x])[1])
