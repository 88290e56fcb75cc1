"""Model(order=...): any topological order of the graph's layers, validated, kept by files."""

import numpy as np
import pytest

import convnp
from convnp.nn import Add, BatchNorm2D, Conv2D, Dense, Flatten, Input, Model, ReLU


def shortcut_first():
    """A block whose shortcut a depth-first walk meets first: Add([projection, body])."""
    inputs = Input((2, 6, 6))
    body = BatchNorm2D(name="bn")(Conv2D(4, 3, padding=1, name="conv")(inputs))
    projection = Conv2D(4, 1, name="proj")(inputs)
    joined = ReLU(name="relu")(Add(name="add")([projection, body]))
    return inputs, Dense(3, name="fc")(Flatten(name="flat")(joined))


def test_default_order_is_a_depth_first_walk_from_the_output():
    inputs, outputs = shortcut_first()
    model = Model(inputs, outputs)
    assert [layer.name for layer in model.layers] == ["proj", "conv", "bn", "add", "relu", "flat", "fc"]


def test_order_sets_layers_keys_and_parameters_and_computes_the_same():
    inputs, outputs = shortcut_first()
    default = Model(inputs, outputs, dtype="float64", seed=0)
    layers = {layer.name: layer for layer in default.layers}
    order = [layers[name] for name in ("conv", "bn", "proj", "add", "relu", "flat", "fc")]
    model = Model(inputs, outputs, dtype="float64", order=order)
    assert model.layers == order
    assert [key for key, _ in model.named_parameters()][:4] == ["conv.weight", "conv.bias", "bn.weight", "bn.bias"]
    assert list(model.state_dict())[6:8] == ["proj.weight", "proj.bias"]
    assert [line.split()[0] for line in model.summary().splitlines()[4:11]] == [layer.name for layer in order]
    x = np.random.default_rng(0).standard_normal((3, 2, 6, 6))
    np.testing.assert_array_equal(model.forward(x), default.forward(x))
    np.testing.assert_array_equal(model.backward(np.ones((3, 3))), default.backward(np.ones((3, 3))))


def test_order_must_be_a_topological_order_of_exactly_the_graphs_layers():
    inputs, outputs = shortcut_first()
    layers = {layer.name: layer for layer in Model(inputs, outputs).layers}
    names = ["conv", "bn", "proj", "add", "relu", "flat", "fc"]
    with pytest.raises(ValueError, match=r"lists Add .*'add' before \[\"BatchNorm2D .*'bn'\"\], which it reads"):
        Model(inputs, outputs, order=[layers[n] for n in ("conv", "proj", "add", "bn", "relu", "flat", "fc")])
    with pytest.raises(ValueError, match=r"each of the graph's 7 layers once; got 6 \(missing \[\"ReLU .*'relu'\"\]"):
        Model(inputs, outputs, order=[layers[n] for n in names if n != "relu"])
    with pytest.raises(ValueError, match=r"not in the graph \['Dense'\]"):
        Model(inputs, outputs, order=[*(layers[n] for n in names if n != "relu"), Dense(2)])
    with pytest.raises(ValueError, match="once"):
        Model(inputs, outputs, order=[*(layers[n] for n in names if n != "relu"), layers["fc"]])


def test_a_saved_model_loads_in_its_order(tmp_path):
    inputs, outputs = shortcut_first()
    layers = {layer.name: layer for layer in Model(inputs, outputs).layers}
    order = [layers[name] for name in ("conv", "bn", "proj", "add", "relu", "flat", "fc")]
    model = Model(inputs, outputs, order=order, seed=0)
    loaded = convnp.load(model.save(tmp_path / "model.npz"))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in order]
    assert list(loaded.state_dict()) == list(model.state_dict())
    x = np.random.default_rng(1).random((2, 2, 6, 6), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
