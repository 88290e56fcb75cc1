"""ONNX export: ONNX Runtime's output equals ``model.predict`` for every layer type."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from convnp import nn
from convnp.interop import build_onnx_model, to_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-5


def _trained(layers, input_shape, classes, dtype="float32", seed=0):
    """A model built with ``seed`` and trained one epoch on random data (batch-norm stats move)."""
    model = nn.Sequential(layers, input_shape=input_shape, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((24, *input_shape)).astype(dtype)
    y = rng.integers(0, classes, 24)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, seed=0)
    return model


def conv_model(dtype="float32"):
    """Convolutions and pools: strides, "same" (asymmetric) pads, dilation, groups, fused activations."""
    layers = [
        nn.Conv2D(4, 3, padding="same", activation="relu"),
        nn.BatchNorm2D(),
        nn.MaxPool2D(3, stride=2, padding=1),  # overlapping, padded: (4, 5, 5)
        nn.Conv2D(6, (2, 3), stride=2, padding="same", groups=2, activation=nn.LeakyReLU(0.2)),
        nn.GroupNorm(3),  # (6, 3, 3)
        nn.AvgPool2D(2, stride=1, padding=1),  # (6, 4, 4), zero padding counted
        nn.ELU(),
        nn.Conv2D(8, 2, dilation=2, padding="same", use_bias=False, activation="tanh"),
        nn.Conv2D(8, 2, padding="same", activation="elu"),  # even kernel: pads (0, 1, 0, 1)
        nn.MaxPool2D(3, stride=2, padding="same"),  # pads (1, 1, 1, 1): (8, 2, 2)
        nn.GlobalAvgPool2D(),
        nn.Dense(5, activation="sigmoid"),
        nn.Dense(4),
    ]
    return _trained(layers, (2, 9, 9), 4, dtype)


def odd_pool_model():
    """'same' pools with stride 2 on odd sizes: asymmetric pads (0, 1, 0, 1)."""
    layers = [
        nn.AvgPool2D(2, stride=2, padding="same"),  # (2, 5, 5) -> (2, 3, 3)
        nn.Conv2D(3, 1, activation="gaussian"),
        nn.MaxPool2D(2, stride=2, padding="same"),  # (3, 3, 3) -> (3, 2, 2)
        nn.Flatten(),
        nn.Dense(3),
    ]
    return _trained(layers, (2, 5, 5), 3)


def dense_model():
    """Dense layers, BatchNorm1D, Dropout, LayerNorm on vectors, every activation layer, final Softmax."""
    layers = [
        nn.Flatten(),
        nn.Dense(16, activation="gaussian"),
        nn.BatchNorm1D(),
        nn.Dropout(0.3, rng=0),
        nn.Dense(12, activation="elu"),
        nn.LayerNorm(),
        nn.Tanh(),
        nn.Dense(8, use_bias=False),
        nn.Gaussian(),
        nn.Dense(8),
        nn.Sigmoid(),
        nn.Dense(8),
        nn.LeakyReLU(0.1),
        nn.ReLU(),
        nn.Dense(4, activation=nn.ELU(0.5)),
        nn.Softmax(),
    ]
    return _trained(layers, (3, 4, 4), 4)


def norm_model():
    """LayerNorm over (C, H, W), GroupNorm on vectors, Softmax over channels inside the net."""
    layers = [
        nn.LayerNorm(),
        nn.Conv2D(6, 3, activation="gaussian"),
        nn.GroupNorm(2),
        nn.Dropout(0.2, rng=0),
        nn.Conv2D(4, 1, activation="softmax"),  # softmax along the channels of (N, 4, 4, 4)
        nn.Flatten(),
        nn.Dense(6),
        nn.GroupNorm(3),  # on (N, 6)
        nn.Dense(3, activation="leaky_relu"),
    ]
    return _trained(layers, (3, 6, 6), 3)


def graph_model():
    """A graph: Add, Concatenate, Identity, a Residual, ConvTranspose2D, Upsample2D, AdaptiveAvgPool2D."""
    inputs = nn.Input((2, 8, 8))
    x = nn.Conv2D(4, 3, padding=1, activation="relu", name="stem")(inputs)
    s = nn.Add()([x, nn.Identity()(x), nn.Conv2D(4, 1)(x)])  # three inputs
    c = nn.Concatenate(axis=1)([s, nn.MaxPool2D(3, stride=1, padding=1)(x)])  # (8, 8, 8)
    r = nn.Residual(
        [nn.Conv2D(6, 3, stride=2, padding=1), nn.BatchNorm2D(), nn.ReLU(), nn.Conv2D(6, 3, padding=1)],
        shortcut=[nn.Conv2D(6, 1, stride=2, use_bias=False), nn.BatchNorm2D()],
        name="layer1.0",
    )(c)  # (6, 4, 4)
    u = nn.ConvTranspose2D(4, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=1)(r)  # (4, 8, 8)
    near = nn.Upsample2D((2, 3))(nn.MaxPool2D(2)(u))  # (4, 8, 12)
    smooth = nn.Upsample2D(2, mode="bilinear")(nn.AvgPool2D(2)(u))  # (4, 8, 8)
    even = nn.Flatten()(nn.AdaptiveAvgPool2D((2, 4))(smooth))  # dividing bins: an average pool
    uneven = nn.Flatten()(nn.AdaptiveAvgPool2D((3, 5))(near))  # overlapping bins
    h = nn.Concatenate(axis=-1)([even, uneven])
    return _trained_graph(nn.Model(inputs, nn.Dense(4)(h), seed=0), 4)


def _trained_graph(model, classes, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((24, *model.input_shape)).astype(model.dtype)
    model.fit(x, rng.integers(0, classes, 24), epochs=1, batch_size=8, verbose=0, seed=0)
    return model


MODELS = {
    "conv": conv_model,
    "odd_pool": odd_pool_model,
    "dense": dense_model,
    "norm": norm_model,
    "graph": graph_model,
}


@pytest.fixture(scope="module")
def models():
    return {name: build() for name, build in MODELS.items()}


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(["probabilities"], {"input": x})
    return out


def _inputs(model, n, seed=1):
    return np.random.default_rng(seed).standard_normal((n, *model.input_shape)).astype(np.float32)


@pytest.mark.parametrize("opset", [13, 17, 21])
@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_runtime_matches_predict(models, name, opset, tmp_path):
    model = models[name]
    path = to_onnx(model, tmp_path / f"{name}.onnx", opset=opset)
    assert path == tmp_path / f"{name}.onnx" and path.exists()
    for batch in (1, 7):  # one file, a dynamic batch dimension
        x = _inputs(model, batch)
        out = _run(path, x)
        expected = model.predict(x)
        assert out.shape == expected.shape == (batch, *model.output_shape)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)  # probabilities


def test_every_layer_type_is_covered(models):
    covered = {type(layer).__name__ for model in models.values() for layer in model.layers}
    covered |= {
        type(layer.activation).__name__
        for model in models.values()
        for layer in model.layers
        if getattr(layer, "activation", None) is not None
    }
    assert covered >= set(nn.__all__) - {"Parameter", "Layer", "Sequential", "Model", "Input", "Node", "get_activation"}


def test_graph_structure(models):
    proto = build_onnx_model(models["conv"], opset=17)
    onnx.checker.check_model(proto, full_check=True)
    (graph_input,) = proto.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "input" and dims[0].dim_param == "N"
    assert [d.dim_value for d in dims[1:]] == [2, 9, 9]
    (graph_output,) = proto.graph.output
    assert graph_output.name == "probabilities"
    assert [d.dim_value for d in graph_output.type.tensor_type.shape.dim[1:]] == [4]
    assert proto.opset_import[0].version == 17

    nodes = list(proto.graph.node)
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in node.attribute} for node in nodes]
    convs = [a for node, a in zip(nodes, attrs) if node.op_type == "Conv"]
    assert convs[0]["pads"] == [1, 1, 1, 1]
    # (2, 3) kernel, stride 2, "same" on 5x5: H pads (0, 1), W pads (1, 1); ONNX order t, l, b, r.
    assert convs[1]["pads"] == [0, 1, 1, 1] and convs[1]["group"] == 2 and convs[1]["strides"] == [2, 2]
    assert convs[2]["dilations"] == [2, 2] and convs[2]["pads"] == [1, 1, 1, 1]
    assert convs[3]["pads"] == [0, 0, 1, 1]
    avg = next(a for node, a in zip(nodes, attrs) if node.op_type == "AveragePool")
    assert avg["count_include_pad"] == 1
    assert next(a for node, a in zip(nodes, attrs) if node.op_type == "Gemm")["transB"] == 1
    assert [n.op_type for n in nodes].count("Softmax") == 1 and nodes[-1].op_type == "Softmax"
    assert nodes[-1].output[0] == "probabilities"
    bias_free = [n for n in nodes if n.name == "7.Conv"]
    assert len(bias_free) == 1 and len(bias_free[0].input) == 2
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    np.testing.assert_array_equal(initializers["1.running_mean"], models["conv"][1].running_mean)
    assert initializers["0.weight"].dtype == np.float32


def test_final_softmax_is_not_doubled(models):
    proto = build_onnx_model(models["dense"])
    ops = [node.op_type for node in proto.graph.node]
    assert ops[-1] == "Softmax" and ops[-2] == "Elu"  # the model's own Softmax, nothing appended


def test_output_follows_predict_for_a_fused_softmax(tmp_path):
    model = nn.Sequential([nn.Flatten(), nn.Dense(3, activation="softmax")], input_shape=(2, 2), seed=0)
    x = _inputs(model, 7)
    np.testing.assert_allclose(_run(to_onnx(model, tmp_path / "s.onnx"), x), model.predict(x), atol=TOLERANCE)


def test_layer_norm_below_opset_17_uses_standard_ops(models):
    ops_13 = {node.op_type for node in build_onnx_model(models["norm"], opset=13).graph.node}
    ops_17 = {node.op_type for node in build_onnx_model(models["norm"], opset=17).graph.node}
    assert "LayerNormalization" not in ops_13 and "LayerNormalization" in ops_17


def test_float64_model_is_exported_as_float32(tmp_path):
    model = conv_model(dtype="float64")
    path = to_onnx(model, tmp_path / "f64.onnx")
    x = _inputs(model, 7)
    out = _run(path, x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, model.predict(x), rtol=0, atol=TOLERANCE)
    assert model.dtype == np.float64 and model[0].weight.data.dtype == np.float64  # model untouched


def test_verify_runs_onnx_runtime(models, tmp_path):
    path = to_onnx(models["odd_pool"], str(tmp_path / "sub" / "m.onnx"), verify=True, atol=1e-6)
    assert path.exists()


def test_errors(models, tmp_path):
    with pytest.raises(TypeError, match="convnp Sequential"):
        to_onnx(nn.Dense(3), tmp_path / "x.onnx")
    with pytest.raises(RuntimeError, match="not built"):
        to_onnx(nn.Sequential([nn.Dense(3)]), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="opset"):
        to_onnx(models["conv"], tmp_path / "x.onnx", opset=11)
    with pytest.raises(TypeError, match="opset"):
        to_onnx(models["conv"], tmp_path / "x.onnx", opset="17")

    class InteropOnnxUnsupported(nn.Layer):
        def forward(self, x, training=False):
            return x

    model = nn.Sequential([nn.Flatten(), InteropOnnxUnsupported(), nn.Dense(2)], input_shape=(4,))
    with pytest.raises(TypeError, match=r"layer 1 \(InteropOnnxUnsupported\)"):
        to_onnx(model, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_missing_onnx_names_the_extra(models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install convnp\[onnx\]"):
        to_onnx(models["conv"], tmp_path / "x.onnx")


def test_missing_onnxruntime_names_the_extra(models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"onnxruntime.*pip install convnp\[onnx\]"):
        to_onnx(models["conv"], tmp_path / "x.onnx", verify=True)
