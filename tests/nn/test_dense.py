"""Dense and Flatten layers: build, gradients, PyTorch, activation, config, errors."""

import json

import numpy as np
import pytest

from convnp.nn.activations import LeakyReLU, ReLU, Tanh
from convnp.nn.dense import Dense, Flatten
from tests.helpers import check_grad, rel_error


def built_dense(in_features, dtype="float64", seed=0, **kwargs):
    layer = Dense(**kwargs)
    layer.build((in_features,), dtype=dtype, rng=seed)
    return layer


def test_build_infers_in_features_and_initialises():
    layer = Dense(300)
    assert layer.build((400,), rng=0) == (300,)
    assert layer.output_shape == (300,) and layer.in_features == 400
    assert layer.weight.shape == (300, 400) and layer.weight.dtype == np.float32
    assert layer.weight.name == "weight" and layer.bias.name == "bias"
    np.testing.assert_array_equal(layer.bias.data, np.zeros(300, dtype=np.float32))
    # he: N(0, 2 / fan_in); 120k draws pin the std to about 0.2 %
    assert layer.weight.data.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert [p.name for p in layer.parameters()] == ["weight", "bias"]
    assert layer.num_parameters() == 300 * 400 + 300


def test_forward_builds_on_first_call_and_seeds_are_reproducible():
    x = np.ones((2, 5), dtype=np.float32)
    layer = Dense(3)
    out = layer(x)
    assert out.shape == (2, 3) and out.dtype == np.float32 and layer.in_features == 5
    a, b = Dense(4, init="xavier"), Dense(4, init="xavier")
    a.build((6,), rng=3)
    b.build((6,), rng=3)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)


@pytest.mark.parametrize("activation", [None, "tanh", "sigmoid", "softmax", LeakyReLU(0.3)])
@pytest.mark.parametrize("use_bias", [True, False])
def test_gradients_match_finite_differences(activation, use_bias):
    layer = built_dense(5, out_features=4, use_bias=use_bias, activation=activation, seed=1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 5))
    dout = rng.standard_normal((3, 4))
    layer.forward(x)
    dx = layer.backward(dout)

    def forward():
        return layer.forward(x)

    check_grad(forward, x, dout, dx)
    check_grad(forward, layer.weight.data, dout, layer.weight.grad)
    if use_bias:
        check_grad(forward, layer.bias.data, dout, layer.bias.grad)
    else:
        assert layer.bias is None and layer.parameters() == [layer.weight]


@pytest.mark.parametrize("seed", range(4))
def test_matches_torch_linear_with_relu(seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    n, n_in, n_out = (int(v) for v in rng.integers(1, 9, size=3))
    layer = built_dense(n_in, out_features=n_out, activation="relu", seed=seed)
    layer.bias.data[:] = rng.standard_normal(n_out)
    x, dout = rng.standard_normal((n, n_in)), rng.standard_normal((n, n_out))
    out = layer.forward(x)
    dx = layer.backward(dout)

    linear = torch.nn.Linear(n_in, n_out).double()
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(layer.weight.data))
        linear.bias.copy_(torch.from_numpy(layer.bias.data))
    tx = torch.tensor(x, requires_grad=True)
    tout = torch.relu(linear(tx))
    tout.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, linear.weight.grad.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, linear.bias.grad.numpy(), rtol=1e-8, atol=1e-12)


def test_float32_path_and_agreement_with_float64():
    layer32 = built_dense(6, dtype="float32", out_features=3, activation="tanh", seed=4)
    layer64 = built_dense(6, dtype="float64", out_features=3, activation="tanh", seed=4)
    rng = np.random.default_rng(5)
    x, dout = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    out64, out32 = layer64.forward(x), layer32.forward(x.astype(np.float32))
    dx64, dx32 = layer64.backward(dout), layer32.backward(dout.astype(np.float32))
    assert out32.dtype == dx32.dtype == layer32.weight.grad.dtype == np.float32
    assert rel_error(out32, out64) < 1e-4 and rel_error(dx32, dx64) < 1e-4
    assert rel_error(layer32.weight.grad, layer64.weight.grad) < 1e-4
    layer32.astype("float64")
    assert layer32.weight.dtype == np.float64 and layer32.bias.dtype == np.float64
    np.testing.assert_allclose(layer32.forward(x), out64, rtol=1e-5)


def test_activation_instance_is_copied_not_shared():
    relu = ReLU()
    a, b = Dense(2, activation=relu), Dense(2, activation=relu)
    assert isinstance(a.activation, ReLU) and a.activation is not relu
    assert a.activation is not b.activation


def test_config_round_trips_through_json():
    for activation in (None, "relu", "linear", Tanh(), LeakyReLU(0.25)):
        layer = Dense(7, use_bias=False, activation=activation, init="lecun")
        layer.build((3,), rng=0)
        config = json.loads(json.dumps(layer.get_config()))
        clone = Dense(**config)
        clone.build((3,), rng=1)
        assert clone.get_config() == layer.get_config()
        clone.weight.data[:] = layer.weight.data
        x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
        np.testing.assert_array_equal(clone.forward(x), layer.forward(x))
    assert Dense(2, activation=LeakyReLU(0.25)).get_config()["activation"] == {
        "class": "LeakyReLU",
        "config": {"alpha": 0.25},
    }
    assert Dense(2, activation="relu").get_config()["activation"] == "relu"
    custom = Dense(2, init=lambda shape, rng: np.ones(shape))
    assert "init" not in custom.get_config()
    assert repr(Dense(2)).startswith("Dense(out_features=2")


def test_bad_arguments_and_inputs_name_the_layer():
    with pytest.raises(ValueError, match=r"Dense: expected a per-sample input.*\(3, 4, 4\).*Flatten"):
        Dense(2).build((3, 4, 4))
    with pytest.raises(ValueError, match="Dense: in_features=5 was given but the input has 4"):
        Dense(2, in_features=5).build((4,))
    with pytest.raises(ValueError, match=r"Dense: unknown activation 'rleu'.*relu"):
        Dense(2, activation="rleu")
    with pytest.raises(ValueError, match="Dense: unknown initializer"):
        Dense(2, init="nope")
    with pytest.raises(ValueError, match="Dense: out_features"):
        Dense(0)
    with pytest.raises(TypeError, match="Dense: out_features"):
        Dense(2.5)
    layer = Dense(2)
    with pytest.raises(RuntimeError, match="Dense: backward called before forward"):
        layer.backward(np.ones((1, 2)))
    layer.build((4,))
    with pytest.raises(ValueError, match=r"Dense: expected input of shape \(N, 4\), got \(2, 5\)"):
        layer.forward(np.ones((2, 5), dtype=np.float32))
    with pytest.raises(TypeError, match="Dense: input dtype float64"):
        layer.forward(np.ones((2, 4)))


# ------------------------------------------------------------------ Flatten
def test_flatten_forward_backward():
    layer = Flatten()
    assert layer.build((3, 4, 5)) == (60,)
    x = np.arange(2 * 60, dtype=np.float32).reshape(2, 3, 4, 5)
    out = layer.forward(x)
    np.testing.assert_array_equal(out, x.reshape(2, 60))
    dout = np.random.default_rng(0).standard_normal((2, 60)).astype(np.float32)
    dx = layer.backward(dout)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx.reshape(2, 60), dout)
    with pytest.raises(ValueError, match=r"Flatten: expected dout of shape \(2, 60\)"):
        layer.backward(dout[:, :10])


def test_flatten_then_dense_gradients():
    flatten, dense = Flatten(), Dense(3, activation="sigmoid")
    dense.build(flatten.build((2, 3, 3), dtype="float64"), dtype="float64", rng=0)
    rng = np.random.default_rng(1)
    x, dout = rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((2, 3))
    dense.forward(flatten.forward(x))
    dx = flatten.backward(dense.backward(dout))
    check_grad(lambda: dense.forward(flatten.forward(x)), x, dout, dx)
