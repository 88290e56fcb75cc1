"""ONNX export of graph models: resnet20, an imported U-Net, the nodes of merges, blocks and the new layers."""

from __future__ import annotations

import numpy as np
import pytest

from convnp import nn
from convnp.interop import build_onnx_model, to_onnx
from convnp.models import resnet20

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-5


def _fitted(model, classes, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((16, *model.input_shape)).astype(model.dtype)
    model.fit(x, rng.integers(0, classes, 16), epochs=1, batch_size=8, verbose=0, seed=0)
    return model


def _check_runtime(model, path):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        x = np.random.default_rng(batch).standard_normal((batch, *model.input_shape)).astype(np.float32)
        (out,) = session.run(["probabilities"], {"input": x})
        assert out.shape == (batch, *model.output_shape)
        np.testing.assert_allclose(out, model.predict(x), rtol=0, atol=TOLERANCE)


def _nodes(proto):
    return [(node, {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}) for node in proto.graph.node]


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_resnet20_runs_in_onnx_runtime(shape, tmp_path):
    model = _fitted(resnet20(shape, seed=0), 10)
    _check_runtime(model, to_onnx(model, tmp_path / "resnet20.onnx"))
    proto = build_onnx_model(model)
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("Add") == 9 and ops.count("Conv") == 21  # nine blocks; 19 convs and two projections
    initializers = {tensor.name for tensor in proto.graph.initializer}
    assert set(model.state_dict()) <= initializers  # named like the state_dict: "layer2.0.downsample.0.weight"


def test_imported_unet_runs_in_onnx_runtime(tmp_path):
    pytest.importorskip("torch")
    from convnp.interop import from_torch
    from tests.interop import torch_networks

    model = from_torch(torch_networks.unet(), (1, 16, 16)).astype("float32")
    path = to_onnx(model, tmp_path / "unet.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 1, 16, 16)).astype(np.float32)
    (out,) = session.run(["probabilities"], {"input": x})
    np.testing.assert_allclose(out, model.predict(x), rtol=0, atol=TOLERANCE)  # per-pixel class probabilities
    ops = {node.op_type for node in build_onnx_model(model).graph.node}
    assert {"ConvTranspose", "Resize", "Concat"} <= ops


def test_nodes_of_merges_blocks_and_the_new_layers():
    inputs = nn.Input((2, 6, 6))
    x = nn.Conv2D(4, 3, padding=1)(inputs)
    joined = nn.Concatenate(axis=-3, name="join")([nn.Add()([x, x, nn.Identity()(x)]), x])  # (8, 6, 6)
    block = nn.Residual([nn.Conv2D(8, 3, padding=1), nn.ReLU()], name="block")(joined)
    up = nn.ConvTranspose2D(4, (3, 2), stride=(2, 1), padding=(1, 0), output_padding=(1, 0), dilation=1)(block)
    near = nn.Upsample2D(2)(up)  # (4, 24, 14)
    smooth = nn.Upsample2D((1, 2), mode="bilinear")(near)  # (4, 24, 28)
    pooled = nn.AdaptiveAvgPool2D((3, 4))(nn.AdaptiveAvgPool2D((5, 7))(smooth))
    model = nn.Model(inputs, nn.Dense(3)(nn.Flatten()(pooled)), seed=0)
    proto = build_onnx_model(model)
    onnx.checker.check_model(proto, full_check=True)
    nodes = _nodes(proto)
    adds = [node for node, _ in nodes if node.op_type == "Add"]
    assert [node.name for node in adds] == ["2.Add", "2.Add_2", "block.Add"]  # x + x, then + identity; the block
    (concat,) = [attrs for node, attrs in nodes if node.op_type == "Concat"]
    assert concat["axis"] == -3
    assert "block.body.0.weight" in {tensor.name for tensor in proto.graph.initializer}
    (transpose,) = [attrs for node, attrs in nodes if node.op_type == "ConvTranspose"]
    assert transpose["strides"] == [2, 1] and transpose["pads"] == [1, 0, 1, 0]
    assert transpose["output_padding"] == [1, 0] and transpose["kernel_shape"] == [3, 2]
    resizes = [(node, attrs) for node, attrs in nodes if node.op_type == "Resize"]
    assert [attrs["mode"] for _, attrs in resizes] == [b"nearest", b"linear"]
    (nearest, linear) = (attrs for _, attrs in resizes)
    assert nearest["coordinate_transformation_mode"] == b"asymmetric" and nearest["nearest_mode"] == b"floor"
    assert linear["coordinate_transformation_mode"] == b"half_pixel"
    initializers = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in proto.graph.initializer}
    np.testing.assert_array_equal(initializers[resizes[1][0].input[2]], [1, 1, 1, 2])
    # (24, 28) -> (5, 7): uneven bins, two MatMuls; (5, 7) -> (3, 4): uneven again; none is an average pool here
    assert [node.op_type for node, _ in nodes].count("MatMul") == 4
    rows = initializers["8.rows"]
    assert rows.shape == (5, 24) and np.allclose(rows.sum(axis=1), 1)
    x = np.random.default_rng(0).standard_normal((7, 2, 6, 6)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["probabilities"], {"input": x})[0], model.predict(x), atol=TOLERANCE)


def test_an_evenly_dividing_adaptive_pool_is_an_average_pool():
    model = nn.Sequential([nn.AdaptiveAvgPool2D((2, 3)), nn.Flatten(), nn.Dense(2)], input_shape=(1, 4, 9), seed=0)
    (pool,) = [attrs for node, attrs in _nodes(build_onnx_model(model)) if node.op_type == "AveragePool"]
    assert pool["kernel_shape"] == [2, 3] and pool["strides"] == [2, 3]


def test_errors_name_the_layer_inside_a_block(tmp_path):
    class InteropOnnxGraphUnsupported(nn.Layer):
        def forward(self, x, training=False):
            return x

    inputs = nn.Input((3,))
    model = nn.Model(inputs, nn.Dense(2)(nn.Residual([nn.Dense(3), InteropOnnxGraphUnsupported()])(inputs)))
    with pytest.raises(TypeError, match=r"layer 0, body.1 \(InteropOnnxGraphUnsupported\) has no ONNX export"):
        to_onnx(model, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
