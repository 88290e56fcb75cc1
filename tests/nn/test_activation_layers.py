"""Activation layers and get_activation / activation_config."""

import json

import numpy as np
import pytest

from convnp.functional import activations as A
from convnp.nn.activations import (
    ACTIVATIONS,
    ELU,
    Gaussian,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    activation_config,
    get_activation,
)
from convnp.nn.dropout import Dropout
from tests.helpers import check_grad, rel_error

LAYERS = [
    (ReLU, {}, A.relu_forward, {}),
    (LeakyReLU, {"alpha": 0.2}, A.leaky_relu_forward, {"alpha": 0.2}),
    (ELU, {"alpha": 0.7}, A.elu_forward, {"alpha": 0.7}),
    (Sigmoid, {}, A.sigmoid_forward, {}),
    (Tanh, {}, A.tanh_forward, {}),
    (Gaussian, {}, A.gaussian_forward, {}),
    (Softmax, {}, A.softmax_forward, {}),
]
IDS = [cls.__name__ for cls, *_ in LAYERS]


def make(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)  # off the kinks
    return x, rng.standard_normal(shape)


@pytest.mark.parametrize(("cls", "kwargs", "functional", "op_kwargs"), LAYERS, ids=IDS)
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2, 2)])
def test_layer_wraps_its_functional_op_and_its_gradient_is_right(cls, kwargs, functional, op_kwargs, shape):
    layer = cls(**kwargs)
    x, dout = make(shape, seed=len(shape))
    out = layer.forward(x)
    np.testing.assert_array_equal(out, functional(x, **op_kwargs)[0])
    assert layer.output_shape == shape[1:] and layer.parameters() == []
    dx = layer.backward(dout)
    check_grad(lambda: layer.forward(x), x, dout, dx)


@pytest.mark.parametrize(("cls", "kwargs", "functional", "op_kwargs"), LAYERS, ids=IDS)
def test_float32_in_float32_out(cls, kwargs, functional, op_kwargs):
    x, dout = make((4, 5), seed=3)
    layer32, layer64 = cls(**kwargs), cls(**kwargs)
    out32 = layer32.forward(x.astype(np.float32), training=True)
    dx32 = layer32.backward(dout.astype(np.float32))
    out64, dx64 = layer64.forward(x), layer64.backward(dout)
    assert out32.dtype == dx32.dtype == np.float32
    assert rel_error(out32, out64) < 1e-4 and rel_error(dx32, dx64) < 1e-4


def test_get_activation_by_name():
    for name, cls in ACTIVATIONS.items():
        layer = get_activation(name)
        assert type(layer) is cls
        assert get_activation(name.upper()).__class__ is cls
    assert get_activation(None) is None
    assert get_activation("linear") is None
    assert get_activation("Linear") is None
    assert set(ACTIVATIONS) == {
        "relu",
        "leaky_relu",
        "elu",
        "sigmoid",
        "tanh",
        "gaussian",
        "softmax",
    }


def test_get_activation_copies_a_layer_instance():
    original = LeakyReLU(0.3)
    layer = get_activation(original)
    assert isinstance(layer, LeakyReLU) and layer is not original and layer.alpha == 0.3


def test_get_activation_errors_list_the_valid_names():
    with pytest.raises(ValueError, match="Conv2D: unknown activation 'swish'") as info:
        get_activation("swish", owner="Conv2D")
    for name in (*ACTIVATIONS, "linear"):
        assert name in str(info.value)
    with pytest.raises(TypeError, match="activation must be a name"):
        get_activation(3)
    with pytest.raises(ValueError, match="activation dict"):
        get_activation({"class": "NoSuchLayer", "config": {}})


@pytest.mark.parametrize("activation", [None, ReLU(), Softmax(), LeakyReLU(), LeakyReLU(0.3), ELU(2.0), Dropout(0.2)])
def test_activation_config_round_trips_through_json(activation):
    config = json.loads(json.dumps(activation_config(activation)))
    rebuilt = get_activation(config)
    if activation is None:
        assert config is None and rebuilt is None
    else:
        assert type(rebuilt) is type(activation)
        assert rebuilt.get_config() == activation.get_config()


def test_activation_config_uses_names_for_defaults():
    assert activation_config(ReLU()) == "relu"
    assert activation_config(LeakyReLU()) == "leaky_relu"
    assert activation_config(LeakyReLU(0.3)) == {"class": "LeakyReLU", "config": {"alpha": 0.3}}


def test_layer_errors_name_the_layer():
    with pytest.raises(TypeError, match="LeakyReLU: alpha"):
        LeakyReLU("x")
    layer = Sigmoid()
    with pytest.raises(RuntimeError, match="Sigmoid: backward called before forward"):
        layer.backward(np.ones((1, 2)))
    with pytest.raises(TypeError, match="Sigmoid: expected a floating-point input"):
        layer.forward(np.ones((2, 3), dtype=np.int32))
    layer.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"Sigmoid: expected input of shape \(N, 3\)"):
        layer.forward(np.ones((2, 4)))
