"""from_onnx: graphs exported by torch.onnx.export, by convnp's to_onnx and built by hand predict like ONNX Runtime.

Round trips: every built-in model through to_onnx (graph models once to_onnx
exports them), PyTorch CNNs (a Sequential and a ResNet) through
torch.onnx.export, a hand-built graph with Keras-style asymmetric "SAME"
padding and a ceil-mode max pool at every opset from 11 to 21. An imported
model keeps ONNX's names, trains and saves as a convnp file.
"""

from __future__ import annotations

import inspect
import io
import sys
import warnings

import numpy as np
import pytest

import convnp
from convnp import models, nn
from convnp.interop import OnnxImportError, build_onnx_model, from_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
helper, numpy_helper = onnx.helper, onnx.numpy_helper

TOLERANCE = 1e-5


def run_onnx_runtime(model_proto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x})
    return out


def graph_export_supported() -> bool:
    """Whether to_onnx exports graph models (``Model``), checked once at collection."""
    inputs = nn.Input((1, 4, 4))
    tiny = nn.Model(inputs, nn.Dense(2)(nn.Flatten()(nn.Add()([inputs, nn.Identity()(inputs)]))))
    try:
        build_onnx_model(tiny)
    except TypeError:
        return False
    return True


GRAPH_EXPORT = graph_export_supported()
BUILT_INS = {
    "mnist_cnn": (1, 12, 12),
    "lenet5": (1, 16, 16),
    "convnet_bn": (3, 8, 8),
    "resnet20": (3, 8, 8),
    "resnet32": (3, 8, 8),
    "resnet56": (3, 8, 8),
    "resnet18": (3, 8, 8),
}
GRAPH_BUILT_INS = {"resnet20", "resnet32", "resnet56", "resnet18"}  # graph models (Model)
WITHOUT_GRAPH_EXPORT = pytest.mark.skipif(
    not GRAPH_EXPORT, reason="to_onnx does not export graph models (Model) yet; the ResNets are read from torch below"
)


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=WITHOUT_GRAPH_EXPORT) if name in GRAPH_BUILT_INS else name for name in BUILT_INS]
)
def test_every_built_in_model_survives_to_onnx_and_back(name):
    model = models.build_model(name, BUILT_INS[name], num_classes=5, seed=0)
    assert isinstance(model, nn.Model) == (name in GRAPH_BUILT_INS)
    rng = np.random.default_rng(0)
    for _, buffer in model.named_buffers():  # batch-norm statistics away from their initial values
        buffer[...] = rng.uniform(0.5, 1.5, buffer.shape)
    imported = from_onnx(build_onnx_model(model))
    x = rng.random((4, *BUILT_INS[name])).astype(np.float32)
    np.testing.assert_allclose(imported.predict(x), model.predict(x), atol=TOLERANCE)
    assert list(imported.state_dict()) == list(model.state_dict())


# ------------------------------------------------------------------ PyTorch's exporter
def torch_export(torch, module, input_shape, opset: int, fold_constants: bool = False):
    """``torch.onnx.export`` (the TorchScript exporter) of an eval-mode module, batch axis dynamic."""
    buffer = io.BytesIO()
    # The TorchScript exporter: PyTorch 2.9 made the torch.export-based one (which needs onnxscript) the default.
    exporter = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), torch.randn(2, *input_shape), buffer, opset_version=opset, input_names=["x"],
            output_names=["y"], dynamic_axes={"x": {0: "N"}}, do_constant_folding=fold_constants, **exporter,
        )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def randomize(torch, module, seed: int = 0) -> None:
    """Weights and batch-norm statistics away from their defaults (so no two initializers are equal)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if tensor.dim() >= 2:  # a convolution or linear weight: unit-scale outputs
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in**0.5)
            elif "running_var" in name or name.endswith("weight"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) - 0.5)


def torch_cnn(torch, opset: int):
    """A PyTorch Sequential CNN with every op from_onnx reads from PyTorch (LayerNorm from opset 17 on)."""
    tnn = torch.nn
    layers = [
        tnn.Conv2d(3, 8, 3, stride=2, padding=1), tnn.BatchNorm2d(8), tnn.ReLU(),  # (8, 8, 7)
        tnn.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True),  # (8, 4, 3)
        tnn.Upsample(scale_factor=2, mode="nearest"),  # (8, 8, 6)
        tnn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False), tnn.LeakyReLU(0.2),
        tnn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1), tnn.ELU(0.5),  # (6, 16, 12)
        tnn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),  # (6, 9, 7)
        tnn.Upsample(scale_factor=2, mode="bilinear"), tnn.Tanh(),  # (6, 18, 14)
        tnn.AvgPool2d(2), tnn.Sigmoid(),  # (6, 9, 7)
    ]  # fmt: skip
    if opset >= 17:
        layers.append(tnn.LayerNorm(tnn.Sequential(*layers)(torch.zeros(1, 3, 15, 13)).shape[2:]))
    features = tnn.Sequential(*layers)(torch.zeros(1, 3, 15, 13)).numel()
    layers += [tnn.Flatten(), tnn.Dropout(0.3), tnn.Linear(features, 10), tnn.BatchNorm1d(10), tnn.ReLU(),
               tnn.Linear(10, 4), tnn.Softmax(dim=1)]  # fmt: skip
    module = tnn.Sequential(*layers)
    randomize(torch, module)
    return module


@pytest.mark.parametrize("opset", [11, 13, 17, 20])
def test_a_torch_sequential_cnn_predicts_like_onnx_runtime(opset):
    torch = pytest.importorskip("torch")
    module = torch_cnn(torch, opset)
    model_proto = torch_export(torch, module, (3, 15, 13), opset)
    model = from_onnx(model_proto)
    x = np.random.default_rng(opset).random((5, 3, 15, 13)).astype(np.float32)
    expected = run_onnx_runtime(model_proto, x)
    np.testing.assert_allclose(model.forward(x), expected, atol=TOLERANCE)
    np.testing.assert_allclose(model.predict(x), expected, atol=TOLERANCE)  # the graph ends in its softmax
    with torch.no_grad():
        np.testing.assert_allclose(expected, module(torch.tensor(x)).numpy(), atol=TOLERANCE)
    # Weights keep PyTorch's names, so the state_dict moves back unchanged.
    torch_keys = [key for key in module.state_dict() if not key.endswith("num_batches_tracked")]
    assert sorted(model.state_dict()) == sorted(torch_keys)
    for key, value in module.state_dict().items():
        if key in torch_keys:
            np.testing.assert_array_equal(model.state_dict()[key], value.numpy())


class _TorchResNet:
    """He et al.'s CIFAR ResNet in plain PyTorch, with convnp's (and torchvision's) module names."""

    @staticmethod
    def build(torch, blocks: int, num_classes: int):
        tnn = torch.nn

        class BasicBlock(tnn.Module):
            def __init__(self, in_channels, channels, stride):
                super().__init__()
                self.conv1 = tnn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
                self.bn1 = tnn.BatchNorm2d(channels)
                self.conv2 = tnn.Conv2d(channels, channels, 3, 1, 1, bias=False)
                self.bn2 = tnn.BatchNorm2d(channels)
                self.downsample = None
                if stride != 1 or in_channels != channels:
                    self.downsample = tnn.Sequential(
                        tnn.Conv2d(in_channels, channels, 1, stride, bias=False), tnn.BatchNorm2d(channels)
                    )

            def forward(self, x):
                out = torch.relu(self.bn1(self.conv1(x)))
                out = self.bn2(self.conv2(out))
                return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

        class ResNet(tnn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = tnn.Conv2d(3, 16, 3, 1, 1, bias=False)
                self.bn1 = tnn.BatchNorm2d(16)
                stages, in_channels = [], 16
                for stage, channels in enumerate((16, 32, 64)):
                    stage_blocks = []
                    for block in range(blocks):
                        stride = 2 if stage > 0 and block == 0 else 1
                        stage_blocks.append(BasicBlock(in_channels, channels, stride))
                        in_channels = channels
                    stages.append(tnn.Sequential(*stage_blocks))
                self.layer1, self.layer2, self.layer3 = stages
                self.fc = tnn.Linear(64, num_classes)

            def forward(self, x):
                x = torch.relu(self.bn1(self.conv1(x)))
                x = self.layer3(self.layer2(self.layer1(x)))
                return self.fc(torch.flatten(tnn.functional.adaptive_avg_pool2d(x, 1), 1))

        return ResNet()


@pytest.mark.parametrize("fold_constants", [False, True], ids=["named", "batch-norm-folded"])
def test_a_torch_resnet_predicts_like_onnx_runtime_and_like_convnps_resnet20(fold_constants):
    """convnp's resnet20 weights in a plain PyTorch ResNet-20, exported by PyTorch and read back."""
    torch = pytest.importorskip("torch")
    reference = models.resnet20(input_shape=(3, 8, 8), num_classes=6, seed=0)
    rng = np.random.default_rng(1)
    for _, buffer in reference.named_buffers():
        buffer[...] = rng.uniform(0.5, 1.5, buffer.shape)
    module = _TorchResNet.build(torch, 3, 6)
    module.load_state_dict({k: torch.tensor(v) for k, v in reference.state_dict().items()}, strict=False)
    model_proto = torch_export(torch, module, (3, 8, 8), 17, fold_constants)
    model = from_onnx(model_proto)
    x = rng.random((4, 3, 8, 8)).astype(np.float32)
    expected = run_onnx_runtime(model_proto, x)
    np.testing.assert_allclose(model.forward(x), expected, atol=TOLERANCE)
    np.testing.assert_allclose(model.predict(x), reference.predict(x), atol=TOLERANCE)
    assert sum(isinstance(layer, nn.Add) for layer in model.layers) == 9  # one per basic block
    if not fold_constants:
        assert list(model.state_dict()) == list(reference.state_dict())


# ------------------------------------------------------------------ graphs built by hand
def initializer(name: str, array) -> object:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def keras_style_graph(opset: int):
    """A graph as TensorFlow/Keras exporters write it: asymmetric "SAME" padding, ceil-mode pooling, MatMul + Add.

    Input (2, 10, 8): Conv 3x3 stride 2 SAME_UPPER (pads 0 before, 1 after) -> (4, 5, 4); Conv 3x3
    stride 2 with explicit pads [top 0, left 1, bottom 1, right 1] -> (4, 2, 2); and every other op
    from_onnx reads that exists at ``opset``.
    """
    rng = np.random.default_rng(opset)

    def weights(*shape):
        return rng.uniform(-0.5, 0.5, shape)

    inits = [
        initializer("stem.weight", weights(4, 2, 3, 3)), initializer("stem.bias", weights(4)),
        initializer("second.weight", weights(4, 4, 3, 3)),
        initializer("bn.weight", rng.uniform(0.5, 1.5, 4)), initializer("bn.bias", weights(4)),
        initializer("bn.running_mean", weights(4)), initializer("bn.running_var", rng.uniform(0.5, 1.5, 4)),
        initializer("up.weight", weights(4, 2, 3, 2)),
        initializer("dense/kernel", weights(16, 5)), initializer("dense/bias", weights(5)),
        initializer("head.weight", weights(3, 5)), initializer("head.bias", weights(3)),
    ]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "stem.weight", "stem.bias"], ["c1"], name="stem", strides=[2, 2],
                         auto_pad="SAME_UPPER"),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "second.weight"], ["c2"], name="second", strides=[2, 2],
                         pads=[0, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c2", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"],
                         ["b2"], epsilon=1e-3, momentum=0.99),
        helper.make_node("LeakyRelu", ["b2"], ["l2"], alpha=0.3),
        helper.make_node("MaxPool", ["l2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),  # (4, 1, 1)
        helper.make_node("ConvTranspose", ["p2", "up.weight"], ["u2"], strides=[2, 2]),  # (2, 3, 2)
        helper.make_node("AveragePool", ["r1"], ["a1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 0],
                         ceil_mode=1),  # (4, 3, 2), the padding left out of the averages
        helper.make_node("Concat", ["a1", "u2"], ["cat"], axis=1),  # (6, 3, 2)
        helper.make_node("Sigmoid", ["normed"], ["s"]),
        helper.make_node("Elu", ["normed"], ["e"], alpha=0.5),
        helper.make_node("Add", ["s", "e"], ["sum"]),
        helper.make_node("GlobalAveragePool", ["sum"], ["g"]),  # (6, 1, 1)
        helper.make_node("Resize", ["g", "roi" if opset < 13 else "", "scales"], ["big"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),  # (6, 2, 2)
        helper.make_node("Tanh", ["big"], ["t"]),
        helper.make_node("Reshape", ["t", "shape"], ["flat"]),  # (24,)
        helper.make_node("Gemm", ["flat", "fc.weight"], ["fc"], alpha=0.5, transB=1),
    ]  # fmt: skip
    inits += [
        numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales"),
        numpy_helper.from_array(np.zeros(0, dtype=np.float32), "roi"),  # required before opset 13
        numpy_helper.from_array(np.array([-1, 24], dtype=np.int64), "shape"),
        initializer("fc.weight", weights(16, 24)),
    ]
    if opset >= 21:  # GroupNormalization-18 is deprecated: test_group_normalization_of_opset_18 below
        nodes.insert(9, helper.make_node("GroupNormalization", ["cat", "gn.weight", "gn.bias"], ["normed"],
                                         num_groups=3, epsilon=1e-3))  # fmt: skip
        inits += [initializer("gn.weight", rng.uniform(0.5, 1.5, 6)), initializer("gn.bias", weights(6))]
    else:
        nodes.insert(9, helper.make_node("Identity", ["cat"], ["normed"]))
    if opset >= 17:
        nodes.append(helper.make_node("LayerNormalization", ["fc", "ln.weight", "ln.bias"], ["fc2"], epsilon=1e-3))
        inits += [initializer("ln.weight", rng.uniform(0.5, 1.5, 16)), initializer("ln.bias", weights(16))]
    else:
        nodes.append(helper.make_node("Identity", ["fc"], ["fc2"]))
    if opset >= 12:
        nodes.append(helper.make_node("Dropout", ["fc2", "ratio"], ["d"]))
        inits.append(numpy_helper.from_array(np.array(0.25, dtype=np.float32), "ratio"))
    else:
        nodes.append(helper.make_node("Dropout", ["fc2"], ["d"], ratio=0.25))
    nodes += [
        helper.make_node("MatMul", ["d", "dense/kernel"], ["m"]),
        helper.make_node("Add", ["m", "dense/bias"], ["dense"]),
        helper.make_node("Gemm", ["dense", "head.weight", "head.bias"], ["logits"], transB=1, beta=0.5),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "keras_style",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 2, 10, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("opset", range(11, 22))
def test_a_hand_built_graph_with_asymmetric_same_padding_predicts_like_onnx_runtime(opset):
    model_proto = keras_style_graph(opset)
    model = from_onnx(model_proto)
    layers = {layer.name: layer for layer in model.layers}
    assert layers["stem"].padding == ((0, 1), (0, 1))  # SAME_UPPER at stride 2 on 10x8: one more after
    assert layers["second"].padding == ((0, 1), (1, 1))
    x = np.random.default_rng(opset).random((3, 2, 10, 8)).astype(np.float32)
    np.testing.assert_allclose(model.forward(x), run_onnx_runtime(model_proto, x), atol=TOLERANCE)
    assert model.state_dict()["dense/kernel.weight"].shape == (5, 16)  # MatMul's (in, out) as Dense's (out, in)
    assert "dense/kernel.bias" in model.state_dict()  # the Add after the MatMul is the bias


def test_same_lower_puts_the_odd_row_first():
    rng = np.random.default_rng(0)
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], auto_pad="SAME_LOWER")
    graph = helper.make_graph(
        [node], "same_lower", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 1, 6, 6])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 2, 3, 3])],
        initializer=[initializer("w", rng.standard_normal((2, 1, 3, 3)))],
    )  # fmt: skip
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model = from_onnx(model_proto)
    assert model.layers[0].padding == ((1, 0), (1, 0))
    x = rng.random((2, 1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(model.forward(x), run_onnx_runtime(model_proto, x), atol=TOLERANCE)


def test_group_normalization_of_opset_18_spreads_its_per_group_scale_over_the_channels():
    rng = np.random.default_rng(0)
    node = helper.make_node("GroupNormalization", ["x", "gn.weight", "gn.bias"], ["y"], num_groups=2)
    graph = helper.make_graph(
        [node], "group_norm", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4, 3, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4, 3, 3])],
        initializer=[initializer("gn.weight", [0.5, 2.0]), initializer("gn.bias", [1.0, -1.0])],
    )  # fmt: skip
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model = from_onnx(model_proto)
    np.testing.assert_array_equal(model.state_dict()["gn.weight"], [0.5, 0.5, 2.0, 2.0])
    x = rng.random((2, 4, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(model.forward(x), run_onnx_runtime(model_proto, x), atol=TOLERANCE)


# ------------------------------------------------------------------ training and files
def test_an_imported_model_trains_and_saves_as_a_convnp_file(tmp_path):
    torch = pytest.importorskip("torch")
    module = torch_cnn(torch, 17)[:-1]  # the logits: cross-entropy takes them
    model = from_onnx(torch_export(torch, module, (3, 15, 13), 17))
    rng = np.random.default_rng(0)
    x, y = rng.random((24, 3, 15, 13)).astype(np.float32), rng.integers(0, 4, 24)
    model.zero_grad()
    loss, _ = model.train_pass(x, y, lambda out, labels: convnp.functional.softmax_cross_entropy(out, labels))
    for key, param in model.named_parameters():  # gradients reach every weight
        assert param.grad is not None and np.any(param.grad != 0), key
    before = model.evaluate(x, y)["loss"]
    history = model.fit(x, y, epochs=8, batch_size=8, optimizer="adam", lr=3e-3, verbose=0, seed=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.evaluate(x, y)["loss"] < before
    path = model.save(tmp_path / "imported.npz")
    loaded = convnp.load(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert list(loaded.state_dict()) == list(model.state_dict())


def test_an_imported_model_reads_files_and_bytes(tmp_path):
    model_proto = keras_style_graph(13)
    path = tmp_path / "model.onnx"
    path.write_bytes(model_proto.SerializeToString())
    x = np.random.default_rng(0).random((2, 2, 10, 8)).astype(np.float32)
    expected = from_onnx(model_proto).forward(x)
    np.testing.assert_array_equal(from_onnx(path).forward(x), expected)
    np.testing.assert_array_equal(from_onnx(str(path)).forward(x), expected)
    np.testing.assert_array_equal(from_onnx(path.read_bytes()).forward(x), expected)


# ------------------------------------------------------------------ errors
def single_node_model(node, inits=(), input_shape=("N", 1, 4, 4), opset=13, output_shape=None):
    graph = helper.make_graph(
        [node], "one_node", [helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, output_shape)],
        initializer=list(inits),
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    return model


@pytest.mark.parametrize(
    ("node", "inits", "match"),
    [
        (helper.make_node("Sin", ["x"], ["y"], name="wave"), (), r"node 'wave' \(Sin\): the op is not supported"),
        (helper.make_node("Shape", ["x"], ["y"]), (), r"a Shape node writing 'y': the op is not supported"),
        (
            helper.make_node("Conv", ["x", "w"], ["y"], name="c3d"),
            [initializer("w", np.ones((1, 1, 2, 2, 2)))],
            r"node 'c3d' \(Conv\): expects a weight of shape",
        ),
        (
            helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], name="argmax"),
            (),
            "indices of the maxima",
        ),
        (
            helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[2, 2, 2, 2], name="wide"),
            (),
            r"node 'wide' \(MaxPool\): MaxPool2D: padding .* at most half the kernel",
        ),
        (helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2]), (), "dilations"),
        (helper.make_node("Softmax", ["x"], ["y"], axis=0), (), "batch axis"),
        (helper.make_node("Add", ["x", "c"], ["y"]), [initializer("c", np.ones(4))], "adding a constant"),
        (
            helper.make_node("Resize", ["x", "", "s"], ["y"], mode="cubic"),
            [initializer("s", [1, 1, 2, 2])],
            "mode 'cubic'",
        ),
        (helper.make_node("Resize", ["x", "", "s"], ["y"]), [initializer("s", [1, 1, 1.5, 1.5])], "integer"),
        (
            helper.make_node(
                "Resize", ["x", "", "s"], ["y"], coordinate_transformation_mode="half_pixel", nearest_mode="floor"
            ),
            [initializer("s", [1, 1, 2, 2])],
            "does not copy each pixel",
        ),
        (
            helper.make_node("Reshape", ["x", "s"], ["y"]),
            [numpy_helper.from_array(np.array([-1, 4, 4], dtype=np.int64), "s")],
            r"only a reshape to \(N, features\)",
        ),
        (helper.make_node("Conv", ["x", "w"], ["y"]), [], "must be a constant"),
        (
            helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], auto_pad="SAME_UPPER"),
            [initializer("w", np.ones((1, 1, 3, 3)))],
            "cannot express",
        ),
    ],  # fmt: skip
    ids=lambda value: None,
)
def test_what_convnp_cannot_express_raises_naming_the_node(node, inits, match):
    with pytest.raises(OnnxImportError, match=match):
        from_onnx(single_node_model(node, inits))


def test_a_weight_computed_from_the_input_is_refused():
    node = helper.make_node("Conv", ["x", "x"], ["y"])
    with pytest.raises(OnnxImportError, match="must be a constant"):
        from_onnx(single_node_model(node))


@pytest.mark.parametrize("opset", [10, 22])
def test_opsets_outside_11_to_21_are_refused(opset):
    with pytest.raises(OnnxImportError, match=f"opset {opset}; opsets 11 to 21"):
        from_onnx(single_node_model(helper.make_node("Relu", ["x"], ["y"]), opset=opset))


def test_symbolic_per_sample_sizes_need_input_shape():
    model_proto = single_node_model(helper.make_node("Relu", ["x"], ["y"]), input_shape=("N", "C", "H", "W"))
    with pytest.raises(OnnxImportError, match="pass input_shape"):
        from_onnx(model_proto)
    assert from_onnx(model_proto, input_shape=(2, 3, 3)).input_shape == (2, 3, 3)
    with pytest.raises(OnnxImportError, match="does not fit"):
        from_onnx(single_node_model(helper.make_node("Relu", ["x"], ["y"])), input_shape=(2, 3, 3))


def test_inputs_outputs_and_files_that_do_not_fit(tmp_path):
    with pytest.raises(OnnxImportError, match="not computed by any layer"):
        from_onnx(single_node_model(helper.make_node("Identity", ["x"], ["y"])))
    with pytest.raises(FileNotFoundError, match="no such file"):
        from_onnx(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a model")
    with pytest.raises(OnnxImportError, match="not a readable ONNX model"):
        from_onnx(tmp_path / "junk.onnx")
    with pytest.raises(TypeError, match="expected a path, bytes or an onnx.ModelProto"):
        from_onnx(3)


def test_missing_onnx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"convnp.interop.from_onnx.*pip install convnp\[onnx\]"):
        from_onnx("model.onnx")
