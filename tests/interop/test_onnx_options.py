"""to_onnx writes every op option: pooling dilation and ceil mode, the average's count, per-side padding,
softmax along any axis, layer norm over trailing axes. ONNX Runtime and from_onnx agree with the model."""

from __future__ import annotations

import numpy as np
import pytest

from convnp import nn
from convnp.functional.geometry import pooled_output_size
from convnp.interop import build_onnx_model, from_onnx, to_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-5


def _fitted(model, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((16, *model.input_shape)).astype(model.dtype)
    model.fit(x, rng.integers(0, classes, 16), epochs=1, batch_size=8, verbose=0, seed=0)
    return model


def options_sequential():
    """A chain using every option, each where it changes the result."""
    layers = [
        nn.Conv2D(4, 3, padding=((0, 2), (1, 0)), activation=nn.Softmax(axis=-1)),  # (4, 9, 6)
        nn.MaxPool2D(3, stride=2, padding=((1, 0), (0, 1)), dilation=(2, 1), ceil_mode=True),  # (4, 4, 3)
        nn.Softmax(axis=2),  # along the height
        nn.AvgPool2D(3, stride=2, padding=((1, 1), (1, 0)), ceil_mode=True, count_include_pad=False),  # (4, 3, 2)
        nn.LayerNorm(2),  # over the width
        nn.Conv2D(6, 2, padding=((1, 0), (0, 1))),  # (6, 3, 2)
        nn.AvgPool2D(2, stride=2, padding=((0, 1), (1, 0)), ceil_mode=True),  # (6, 2, 2), the padding counted
        nn.LayerNorm((2, 2)),  # over height and width
        nn.Softmax(axis=-3),  # along the channels, counted from the end
        nn.Flatten(),
        nn.Dense(3),
    ]
    return _fitted(nn.Sequential(layers, input_shape=(2, 9, 7), seed=0))


def options_graph():
    """The options inside a graph: two branches joined, a max pool in ceil mode that a Slice keeps exact."""
    inputs = nn.Input((3, 8, 7))
    x = nn.Conv2D(4, 2, padding=((0, 1), (1, 0)), name="stem")(inputs)  # (4, 8, 7)
    left = nn.MaxPool2D(2, stride=2, dilation=2, padding=((1, 0), (0, 1)), ceil_mode=True)(x)  # (4, 4, 4)
    right = nn.AvgPool2D(3, stride=2, padding=((1, 0), (1, 1)), ceil_mode=True, count_include_pad=False)(x)
    right = nn.LayerNorm(4, name="norm")(right)  # (4, 4, 4)
    joined = nn.Concatenate(axis=2)([left, right])  # (4, 8, 4)
    # Along the height, ceil mode drops a window starting in the padding; along the width it adds one.
    pooled = nn.MaxPool2D((2, 3), stride=(3, 2), padding=((1, 1), (0, 0)), ceil_mode=True)(joined)  # (4, 3, 2)
    out = nn.Dense(3)(nn.Flatten()(nn.Softmax(axis=-2)(pooled)))
    return _fitted(nn.Model(inputs, out, seed=0))


MODELS = {"sequential": options_sequential, "graph": options_graph}


@pytest.fixture(scope="module")
def models():
    return {name: build() for name, build in MODELS.items()}


def _nodes(proto, op_type):
    return [
        {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        for node in proto.graph.node
        if node.op_type == op_type
    ]


@pytest.mark.parametrize("opset", [13, 16, 17, 21])
@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_runtime_agrees_at_batch_sizes_1_and_7(models, name, opset, tmp_path):
    model = models[name]
    session = ort.InferenceSession(
        str(to_onnx(model, tmp_path / "m.onnx", opset=opset)), providers=["CPUExecutionProvider"]
    )
    for batch in (1, 7):
        x = np.random.default_rng(batch).standard_normal((batch, *model.input_shape)).astype(np.float32)
        (out,) = session.run(["probabilities"], {"input": x})
        np.testing.assert_allclose(out, model.predict(x), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("opset", [17, 21])
@pytest.mark.parametrize("name", list(MODELS))
def test_from_onnx_of_to_onnx_predicts_like_the_model(models, name, opset):
    model = models[name]
    imported = from_onnx(build_onnx_model(model, opset=opset))
    x = np.random.default_rng(3).standard_normal((7, *model.input_shape)).astype(np.float32)
    np.testing.assert_allclose(imported.predict(x), model.predict(x), rtol=0, atol=TOLERANCE)


def test_the_options_come_back_from_onnx(models):
    imported = from_onnx(build_onnx_model(models["sequential"]))
    pools = [layer for layer in imported.layers if isinstance(layer, (nn.MaxPool2D, nn.AvgPool2D))]
    assert [type(pool).__name__ for pool in pools] == ["MaxPool2D", "AvgPool2D", "AvgPool2D"]
    assert pools[0].dilation == (2, 1) and pools[0].ceil_mode and pools[0].padding == ((1, 0), (0, 1))
    assert pools[1].ceil_mode and not pools[1].count_include_pad and pools[1].padding == ((1, 1), (1, 0))
    assert pools[2].ceil_mode and pools[2].count_include_pad
    norms = [layer for layer in imported.layers if isinstance(layer, nn.LayerNorm)]
    assert [norm.normalized_shape for norm in norms] == [(2,), (2, 2)]
    softmaxes = [layer for layer in imported.layers if isinstance(layer, nn.Softmax)]
    assert [softmax.axis % 4 for softmax in softmaxes[:3]] == [3, 2, 1]  # the fused one first


def test_the_nodes_carry_every_option(models):
    proto = build_onnx_model(models["sequential"], opset=17)
    (max_pool,) = _nodes(proto, "MaxPool")
    # ONNX orders pads [top, left, bottom, right].
    assert max_pool == {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 0, 1], "dilations": [2, 1],
                        "ceil_mode": 1}  # fmt: skip
    first, second = _nodes(proto, "AveragePool")
    assert first["count_include_pad"] == 0 and first["ceil_mode"] == 1 and first["pads"] == [1, 1, 1, 0]
    assert second["count_include_pad"] == 1 and second["pads"] == [0, 1, 1, 0]
    assert _nodes(proto, "Conv")[0]["pads"] == [0, 1, 2, 0]
    assert [attrs["axis"] for attrs in _nodes(proto, "Softmax")] == [-1, 2, -3, 1]  # the last: predict's
    assert [attrs["axis"] for attrs in _nodes(proto, "LayerNormalization")] == [3, 2]


def test_layer_norm_below_opset_17_standardises_the_trailing_axes_with_older_ops(models):
    ops = [node.op_type for node in build_onnx_model(models["sequential"], opset=16).graph.node]
    assert "LayerNormalization" not in ops and ops.count("InstanceNormalization") == 2
    shapes = [
        onnx.numpy_helper.to_array(tensor).tolist()
        for tensor in build_onnx_model(models["sequential"], opset=16).graph.initializer
        if tensor.name.endswith("group_shape")
    ]
    assert shapes == [[0, 4 * 3, -1], [0, 6, -1]]  # (N, slices, normalised positions)


def test_ceil_mode_is_written_only_where_it_adds_a_window():
    """Ceil mode that adds no window is floor mode; one that drops a window starting in the padding gets a Slice."""
    plain = nn.Sequential([nn.MaxPool2D(2, ceil_mode=True), nn.Flatten(), nn.Dense(2)], input_shape=(1, 4, 6))
    assert _nodes(build_onnx_model(plain), "MaxPool")[0]["ceil_mode"] == 0  # even sizes: the same windows
    graph = build_onnx_model(options_graph())
    ops = [node.op_type for node in graph.graph.node]
    assert ops.count("Slice") == 1 and ops[ops.index("Slice") - 1] == "MaxPool"
    # Without the Slice, onnx's shape inference (the bare ceil formula) would count one more row.
    assert pooled_output_size(8, 2, 3, 1, 1, 1, True) == 3 and -(-(8 + 2 - 2) // 3) + 1 == 4


@pytest.mark.parametrize("size", range(4, 10))
@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation"),
    [(2, 2, 0, 1), (3, 2, 1, 1), (3, 2, ((0, 1), (1, 0)), 1), (2, 3, ((1, 0), (0, 1)), 1), (3, 2, 1, 2),
     ((2, 3), (3, 2), ((1, 1), (0, 1)), (1, 2)), (3, 3, ((1, 0), (1, 1)), 1)],
)  # fmt: skip
def test_every_ceil_mode_pool_agrees_with_onnx_runtime(size, kernel, stride, padding, dilation):
    pools = [
        nn.MaxPool2D(kernel, stride, padding, dilation, ceil_mode=True),
        *([nn.AvgPool2D(kernel, stride, padding, True, count) for count in (True, False)] if dilation == 1 else []),
    ]
    for pool in pools:
        try:
            model = nn.Sequential([pool, nn.Flatten(), nn.Dense(2)], input_shape=(2, size, size + 1), seed=0)
        except ValueError:  # too small for the window
            continue
        proto = build_onnx_model(model)
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        x = np.random.default_rng(size).standard_normal((3, *model.input_shape)).astype(np.float32)
        (out,) = session.run(["probabilities"], {"input": x})
        np.testing.assert_allclose(out, model.predict(x), rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(from_onnx(proto).predict(x), model.predict(x), rtol=0, atol=TOLERANCE)


def test_a_slice_that_drops_positions_is_refused_on_import():
    helper = onnx.helper
    nodes = [
        helper.make_node("Constant", [], ["starts"], value=onnx.numpy_helper.from_array(np.array([0]), "starts")),
        helper.make_node("Constant", [], ["ends"], value=onnx.numpy_helper.from_array(np.array([2]), "ends")),
        helper.make_node("Constant", [], ["axes"], value=onnx.numpy_helper.from_array(np.array([3]), "axes")),
        helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 1, 3, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ValueError, match=r"Slice.*keeps every position"):
        from_onnx(proto)
