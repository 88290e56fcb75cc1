"""Group normalisation written as Reshape, InstanceNormalization, Reshape back, Mul, Add, read as one layer."""

from __future__ import annotations

import numpy as np
import pytest

from convnp import nn
from convnp.interop import OnnxImportError, build_onnx_model, from_onnx

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from tests.interop.test_onnx_import import initializer, run_onnx_runtime, torch_export  # noqa: E402

helper, numpy_helper = onnx.helper, onnx.numpy_helper
TOLERANCE = 1e-5


def torch_group_norms(torch):
    """GroupNorm in every form PyTorch writes: groups of channels, one per channel, one group without
    affine parameters, and on vectors after a Linear."""
    tnn = torch.nn
    module = tnn.Sequential(
        tnn.Conv2d(3, 6, 3), tnn.GroupNorm(3, 6), tnn.ReLU(),  # (6, 6, 6)
        tnn.GroupNorm(6, 6), tnn.GroupNorm(1, 6, affine=False),
        tnn.Flatten(), tnn.Linear(216, 8), tnn.GroupNorm(2, 8, eps=1e-3),
    )  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5 + 0.2)
    return module


@pytest.mark.parametrize("opset", [11, 13, 17, 21])
@pytest.mark.parametrize("fold_constants", [False, True], ids=["constant-nodes", "folded"])
def test_pytorchs_group_norm_export_reads_as_group_norm(opset, fold_constants):
    torch = pytest.importorskip("torch")
    module = torch_group_norms(torch)
    model_proto = torch_export(torch, module, (3, 8, 8), opset, fold_constants)
    assert "InstanceNormalization" in {node.op_type for node in model_proto.graph.node}  # the five-node form
    model = from_onnx(model_proto)
    names = [type(layer).__name__ for layer in model.layers]
    assert names == ["Conv2D", "GroupNorm", "ReLU", "GroupNorm", "GroupNorm", "Flatten", "Dense", "GroupNorm"]
    assert [layer.num_groups for layer in model.layers if isinstance(layer, nn.GroupNorm)] == [3, 6, 1, 2]
    assert [layer.eps for layer in model.layers if isinstance(layer, nn.GroupNorm)] == pytest.approx(
        [1e-5, 1e-5, 1e-5, 1e-3]
    )
    x = np.random.default_rng(opset).standard_normal((4, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model.forward(x), expected, atol=TOLERANCE)
    np.testing.assert_allclose(run_onnx_runtime(model_proto, x), expected, atol=TOLERANCE)
    # Each GroupNorm holds PyTorch's per-channel weight and bias (ones and zeros without affine ones).
    torch_norms = [m for m in module if isinstance(m, torch.nn.GroupNorm)]
    for layer, reference in zip([m for m in model.layers if isinstance(m, nn.GroupNorm)], torch_norms):
        weight = reference.weight.detach().numpy() if reference.affine else np.ones(reference.num_channels)
        bias = reference.bias.detach().numpy() if reference.affine else np.zeros(reference.num_channels)
        np.testing.assert_allclose(layer.weight.data, weight, rtol=1e-6)
        np.testing.assert_allclose(layer.bias.data, bias, rtol=1e-6, atol=1e-7)


def test_an_imported_group_norm_trains_like_pytorchs():
    """The imported model's input and parameter gradients are PyTorch's (float64)."""
    torch = pytest.importorskip("torch")
    module = torch_group_norms(torch)[:5]  # the image part: conv and three group norms
    model = from_onnx(torch_export(torch, module, (3, 8, 8), 13)).astype("float64")
    module = module.double()
    for norm in module[1:]:  # ONNX's epsilon is a float32: the imported layers' is 1e-5 rounded to one
        if isinstance(norm, torch.nn.GroupNorm):
            norm.eps = float(np.float32(norm.eps))
    rng = np.random.default_rng(1)
    x, dout = rng.standard_normal((3, 3, 8, 8)), rng.standard_normal((3, 6, 6, 6))
    model.zero_grad()
    model.forward(x, training=True)
    dx = model.backward(dout)
    tx = torch.tensor(x, requires_grad=True)
    module.train()
    (module(tx) * torch.tensor(dout)).sum().backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=1e-10)
    norms = [m for m in module if isinstance(m, torch.nn.GroupNorm) and m.affine]
    layers = [m for m in model.layers if isinstance(m, nn.GroupNorm)][: len(norms)]
    for layer, reference in zip(layers, norms):
        np.testing.assert_allclose(layer.weight.grad, reference.weight.grad.numpy(), atol=1e-10)
        np.testing.assert_allclose(layer.bias.grad, reference.bias.grad.numpy(), atol=1e-10)


def norm_layers():
    """Every group-standardising layer convnp's to_onnx writes with InstanceNormalization."""
    return [
        nn.Conv2D(6, 3),  # (6, 6, 6)
        nn.GroupNorm(3),
        nn.GroupNorm(6),
        nn.LayerNorm(),  # over (C, H, W)
        nn.LayerNorm((6, 6)),  # over (H, W): one slice per channel
        nn.LayerNorm(6),  # over W
        nn.Flatten(),
        nn.Dense(8),
        nn.GroupNorm(2),  # on vectors
        nn.LayerNorm(),
    ]


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("trained", [False, True], ids=["fresh", "randomised"])
def test_convnps_own_group_and_layer_norms_come_back_as_themselves(opset, trained):
    """Fresh layers (unit weights, where GroupNorm and LayerNorm compute the same) keep their type too."""
    model = nn.Sequential(norm_layers(), input_shape=(3, 8, 8), seed=0)
    if trained:
        rng = np.random.default_rng(0)
        for _, parameter in model.named_parameters():
            parameter.data[...] = rng.uniform(0.5, 1.5, parameter.data.shape)
    imported = from_onnx(build_onnx_model(model, opset=opset))
    assert [type(layer).__name__ for layer in imported.layers] == [type(layer).__name__ for layer in model.layers] + [
        "Softmax"
    ]  # to_onnx writes the probabilities
    for original, read in zip(model.layers, imported.layers):
        if isinstance(original, nn.LayerNorm):
            assert tuple(read.normalized_shape) == original.weight.data.shape
        if isinstance(original, nn.GroupNorm):
            assert read.num_groups == original.num_groups
    assert list(imported.state_dict()) == list(model.state_dict())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(imported.state_dict()[key], value)
    x = np.random.default_rng(2).standard_normal((4, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(imported.predict(x), model.predict(x), atol=TOLERANCE)


def chain(shape_back=None, factor=None, groups=2, reader_of_grouped="InstanceNormalization"):
    """Reshape (N, G, -1) of a (N, 4, 2, 2) input, then the rest of the chain as given."""
    nodes = [helper.make_node("Reshape", ["x", "grouped_shape"], ["grouped"])]
    inits = [
        numpy_helper.from_array(np.array([0, groups, -1], dtype=np.int64), "grouped_shape"),
        initializer("s", np.ones(groups)),
        initializer("b", np.zeros(groups)),
    ]
    if reader_of_grouped == "InstanceNormalization":
        nodes.append(helper.make_node("InstanceNormalization", ["grouped", "s", "b"], ["normed"]))
    else:
        nodes.append(helper.make_node("Relu", ["grouped"], ["normed"]))
    if shape_back is None:
        nodes.append(helper.make_node("Shape", ["x"], ["x_shape"]))
        nodes.append(helper.make_node("Reshape", ["normed", "x_shape"], ["back"]))
    else:
        inits.append(numpy_helper.from_array(np.array(shape_back, dtype=np.int64), "back_shape"))
        nodes.append(helper.make_node("Reshape", ["normed", "back_shape"], ["back"]))
    output = "back"
    if factor is not None:
        inits.append(initializer("gn.weight", factor))
        nodes.append(helper.make_node("Mul", ["back", "gn.weight"], ["y"]))
        output = "y"
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4, 2, 2])],
        [helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)], initializer=inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_a_constant_reshape_back_and_a_scale_with_a_batch_axis_are_read():
    factor = np.arange(1, 5, dtype=np.float32).reshape(1, 4, 1, 1)
    model_proto = chain(shape_back=[0, 4, 2, 2], factor=factor)
    model = from_onnx(model_proto)
    assert isinstance(model.layers[0], nn.GroupNorm) and model.layers[0].num_groups == 2
    np.testing.assert_array_equal(model.state_dict()["gn.weight"], [1, 2, 3, 4])
    x = np.random.default_rng(0).standard_normal((3, 4, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(model.forward(x), run_onnx_runtime(model_proto, x), atol=TOLERANCE)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reader_of_grouped": "Relu"}, r"start of a group normalisation \(no InstanceNormalization reads it\)"),
        ({"shape_back": [0, 2, 2, 4]}, r"the reshape back is to \[0, 2, 2, 4\]"),
        ({"factor": np.ones((4, 2, 3))}, r"Mul by a constant of shape \(4, 2, 3\) does not fit"),
        # A scale per row of each channel: neither one value per channel nor per position of (C, H, W) / 2 groups.
        ({"factor": np.array([[1.0], [2.0]])}, "neither per channel"),
        ({"groups": 3}, "into equal groups"),
    ],
    ids=["no-instance-norm", "reshape-back-elsewhere", "scale-does-not-fit", "scale-per-row", "unequal-groups"],
)
def test_what_is_not_a_group_normalisation_raises_naming_the_node(kwargs, match):
    with pytest.raises(OnnxImportError, match=match):
        from_onnx(chain(**kwargs))
