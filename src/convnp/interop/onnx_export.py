"""Export a convnp ``Sequential`` as a standard ONNX graph.

``to_onnx(model, path)`` writes one ``.onnx`` file that ONNX Runtime (or any
ONNX consumer) runs with the same predictions as ``model.predict``:

    input          float32, shape ("N", *model.input_shape)   (N is dynamic)
    probabilities  float32, shape ("N", *model.output_shape)  softmax along axis 1

The graph ends in a ``Softmax(axis=1)``, exactly as ``model.predict`` does:
one is appended unless the model's last layer already is a ``Softmax`` layer.

Layer by layer (``W``, ``b`` are the layer's own arrays, stored as initializers
named like the state_dict keys, e.g. "0.weight"):

    Conv2D           Conv(strides, pads, dilations, group), then its fused activation
    MaxPool2D        MaxPool(kernel_shape, strides, pads)
    AvgPool2D        AveragePool(..., count_include_pad=1)
    GlobalAvgPool2D  GlobalAveragePool, Flatten(axis=1)
    Dense            Gemm(x, W, b, transB=1), then its fused activation
    Flatten          Flatten(axis=1)
    BatchNorm1D/2D   BatchNormalization (inference form: running_mean, running_var)
    GroupNorm        Reshape(N, G, -1), InstanceNormalization, Reshape back, Mul, Add
    LayerNorm        LayerNormalization(axis=1) (opset >= 17; below, as GroupNorm with G=1)
    ReLU, LeakyReLU, ELU, Sigmoid, Tanh, Softmax(axis=1)   the ONNX op of the same name
    Gaussian         Exp(Neg(Mul(x, x)))
    Dropout          Identity (inference)

"same" padding becomes explicit, possibly asymmetric pads resolved for the
model's input size. Every tensor in the graph is float32: a float64 model is
exported with its parameters cast to float32 (ONNX Runtime's CPU kernels for
convolution are float32-only).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from convnp._optional import require
from convnp.files.atomic import atomic_write_bytes
from convnp.functional.geometry import conv_geometry
from convnp.nn.activations import ELU, Gaussian, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from convnp.nn.conv import Conv2D
from convnp.nn.dense import Dense, Flatten
from convnp.nn.dropout import Dropout
from convnp.nn.layer import Layer
from convnp.nn.normalization import BatchNorm1D, BatchNorm2D, GroupNorm, LayerNorm
from convnp.nn.pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from convnp.nn.sequential import Sequential

__all__ = ["to_onnx", "MIN_OPSET", "INPUT_NAME", "OUTPUT_NAME"]

MIN_OPSET = 13  # Softmax normalises along one axis from opset 13 on
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


class _GraphBuilder:
    """Collects nodes and float32 initializers, handing out unique tensor names."""

    def __init__(self, onnx) -> None:
        self.onnx = onnx
        self.nodes: list = []
        self.initializers: list = []
        self._used: set[str] = {INPUT_NAME, OUTPUT_NAME}

    def unique(self, name: str) -> str:
        candidate, suffix = name, 1
        while candidate in self._used:
            suffix += 1
            candidate = f"{name}_{suffix}"
        self._used.add(candidate)
        return candidate

    def constant(self, name: str, array: np.ndarray, dtype=np.float32) -> str:
        """Add an initializer (cast to ``dtype``) and return its tensor name."""
        name = self.unique(name)
        tensor = self.onnx.numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name)
        self.initializers.append(tensor)
        return name

    def node(self, op_type: str, inputs: list[str], name: str, output: str | None = None, **attrs) -> str:
        """Add one node with one output; returns the output's tensor name."""
        node_name = self.unique(name)
        output = output if output is not None else self.unique(f"{node_name}:out")
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [output], name=node_name, **attrs))
        return output


def _onnx_pads(pads: tuple[int, int, int, int]) -> list[int]:
    """convnp's (top, bottom, left, right) as ONNX's [top, left, bottom, right]."""
    top, bottom, left, right = pads
    return [top, left, bottom, right]


def _window_pads(layer: Layer, dilation: tuple[int, int]) -> list[int]:
    """The explicit pads of a windowed layer for its built input size ("same" resolved)."""
    pads, _ = conv_geometry(
        layer.input_shape[1:], layer.kernel_size, layer.stride, layer.padding, dilation, layer.label
    )
    return _onnx_pads(pads)


def _emit_activation(graph: _GraphBuilder, layer: Layer, x: str, prefix: str) -> str | None:
    """Nodes of a parameter-free activation; None when ``layer`` is not one."""
    if isinstance(layer, ReLU):
        return graph.node("Relu", [x], f"{prefix}Relu")
    if isinstance(layer, LeakyReLU):
        return graph.node("LeakyRelu", [x], f"{prefix}LeakyRelu", alpha=float(layer.alpha))
    if isinstance(layer, ELU):
        return graph.node("Elu", [x], f"{prefix}Elu", alpha=float(layer.alpha))
    if isinstance(layer, Sigmoid):
        return graph.node("Sigmoid", [x], f"{prefix}Sigmoid")
    if isinstance(layer, Tanh):
        return graph.node("Tanh", [x], f"{prefix}Tanh")
    if isinstance(layer, Gaussian):  # exp(-x^2)
        square = graph.node("Mul", [x, x], f"{prefix}Gaussian/Mul")
        negative = graph.node("Neg", [square], f"{prefix}Gaussian/Neg")
        return graph.node("Exp", [negative], f"{prefix}Gaussian/Exp")
    if isinstance(layer, Softmax):
        return graph.node("Softmax", [x], f"{prefix}Softmax", axis=1)
    if isinstance(layer, Dropout):  # inverted dropout is the identity in inference
        return graph.node("Identity", [x], f"{prefix}Dropout")
    return None


def _per_channel(array: np.ndarray, sample_ndim: int) -> np.ndarray:
    """(C,) -> (C, 1, ..., 1) so it broadcasts against (N, C, ...) with ``sample_ndim`` axes."""
    return array.reshape(array.shape[0], *([1] * (sample_ndim - 1)))


def _emit_group_standardise(graph: _GraphBuilder, x: str, groups: int, eps: float, prefix: str) -> str:
    """(x - mean[n, g]) / sqrt(var[n, g] + eps) over each group, as portable ONNX ops.

    Reshape to (N, G, -1), InstanceNormalization (which standardises each (n, g)
    row) with unit scale and zero shift, then Reshape back to x's shape.
    """
    group_shape = graph.constant(f"{prefix}group_shape", np.array([0, groups, -1]), np.int64)
    grouped = graph.node("Reshape", [x, group_shape], f"{prefix}Reshape")  # (N, G, C/G*H*W)
    ones = graph.constant(f"{prefix}unit_scale", np.ones(groups), np.float32)
    zeros = graph.constant(f"{prefix}zero_shift", np.zeros(groups), np.float32)
    standardised = graph.node(
        "InstanceNormalization",
        [grouped, ones, zeros],
        f"{prefix}InstanceNormalization",
        epsilon=float(eps),
    )
    x_shape = graph.node("Shape", [x], f"{prefix}Shape")
    return graph.node("Reshape", [standardised, x_shape], f"{prefix}ReshapeBack")  # (N, C, ...)


def _emit_affine(graph: _GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, prefix: str) -> str:
    scaled = graph.node("Mul", [x, graph.constant(f"{prefix}weight", weight)], f"{prefix}Mul")
    return graph.node("Add", [scaled, graph.constant(f"{prefix}bias", bias)], f"{prefix}Add")


def _emit_layer(graph: _GraphBuilder, layer: Layer, x: str, index: int, opset: int) -> str:
    """Append the nodes of one layer reading tensor ``x``; returns the output tensor name."""
    prefix = f"{index}."
    activation = _emit_activation(graph, layer, x, prefix)
    if activation is not None:
        return activation

    if isinstance(layer, Conv2D):
        inputs = [x, graph.constant(f"{prefix}weight", layer.weight.data)]
        if layer.bias is not None:
            inputs.append(graph.constant(f"{prefix}bias", layer.bias.data))
        out = graph.node(
            "Conv", inputs, f"{prefix}Conv",
            kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
            pads=_window_pads(layer, layer.dilation), dilations=list(layer.dilation),
            group=layer.groups,
        )  # fmt: skip
        return _emit_fused(graph, layer, out, index)
    if isinstance(layer, Dense):
        inputs = [x, graph.constant(f"{prefix}weight", layer.weight.data)]
        if layer.bias is not None:
            inputs.append(graph.constant(f"{prefix}bias", layer.bias.data))
        out = graph.node("Gemm", inputs, f"{prefix}Gemm", transB=1)  # x @ W.T + b
        return _emit_fused(graph, layer, out, index)
    if isinstance(layer, (MaxPool2D, AvgPool2D)):
        attrs = {
            "kernel_shape": list(layer.kernel_size),
            "strides": list(layer.stride),
            "pads": _window_pads(layer, (1, 1)),
        }
        if isinstance(layer, AvgPool2D):
            return graph.node("AveragePool", [x], f"{prefix}AveragePool", count_include_pad=1, **attrs)
        return graph.node("MaxPool", [x], f"{prefix}MaxPool", **attrs)
    if isinstance(layer, GlobalAvgPool2D):
        pooled = graph.node("GlobalAveragePool", [x], f"{prefix}GlobalAveragePool")  # (N, C, 1, 1)
        return graph.node("Flatten", [pooled], f"{prefix}Flatten", axis=1)  # (N, C)
    if isinstance(layer, Flatten):
        return graph.node("Flatten", [x], f"{prefix}Flatten", axis=1)
    if isinstance(layer, (BatchNorm1D, BatchNorm2D)):
        inputs = [
            x,
            graph.constant(f"{prefix}weight", layer.weight.data),
            graph.constant(f"{prefix}bias", layer.bias.data),
            graph.constant(f"{prefix}running_mean", layer.running_mean),
            graph.constant(f"{prefix}running_var", layer.running_var),
        ]
        return graph.node("BatchNormalization", inputs, f"{prefix}BatchNormalization", epsilon=float(layer.eps))
    if isinstance(layer, GroupNorm):
        sample_ndim = len(layer.input_shape)
        standardised = _emit_group_standardise(graph, x, layer.num_groups, layer.eps, prefix)
        weight = _per_channel(layer.weight.data, sample_ndim)
        bias = _per_channel(layer.bias.data, sample_ndim)
        return _emit_affine(graph, standardised, weight, bias, prefix)
    if isinstance(layer, LayerNorm):
        if opset >= 17:
            inputs = [
                x,
                graph.constant(f"{prefix}weight", layer.weight.data),
                graph.constant(f"{prefix}bias", layer.bias.data),
            ]
            return graph.node(
                "LayerNormalization", inputs, f"{prefix}LayerNormalization",
                axis=1, epsilon=float(layer.eps),
            )  # fmt: skip
        standardised = _emit_group_standardise(graph, x, 1, layer.eps, prefix)
        return _emit_affine(graph, standardised, layer.weight.data, layer.bias.data, prefix)
    raise TypeError(
        f"to_onnx: layer {index} ({type(layer).__name__}) has no ONNX export; supported layers: "
        "Conv2D, MaxPool2D, AvgPool2D, GlobalAvgPool2D, Dense, Flatten, ReLU, LeakyReLU, ELU, "
        "Sigmoid, Tanh, Gaussian, Softmax, Dropout, BatchNorm1D, BatchNorm2D, GroupNorm, LayerNorm"
    )


def _emit_fused(graph: _GraphBuilder, layer: Layer, x: str, index: int) -> str:
    """The fused ``activation`` of a Conv2D or Dense, if any, as its own nodes."""
    if layer.activation is None:
        return x
    out = _emit_activation(graph, layer.activation, x, f"{index}.activation.")
    if out is None:
        raise TypeError(
            f"to_onnx: layer {index} ({type(layer).__name__}) has a fused activation "
            f"{type(layer.activation).__name__} with no ONNX export"
        )
    return out


def build_onnx_model(model, opset: int = 17):
    """The ``onnx.ModelProto`` that ``to_onnx`` writes (checked with ``onnx.checker``).

    Parameters
    ----------
    model : convnp.nn.Sequential
        A built model.
    opset : int
        ONNX opset version of the default domain, from ``MIN_OPSET`` (13) to the
        newest the installed ``onnx`` knows.

    Returns
    -------
    onnx.ModelProto
    """
    onnx = require("onnx", "convnp.interop.to_onnx", "onnx")
    from convnp._version import __version__

    if not isinstance(model, Sequential):
        raise TypeError(f"to_onnx: expected a convnp Sequential, got {type(model).__name__}")
    if not model.built:
        raise RuntimeError(
            "to_onnx: the model is not built yet; pass input_shape= to Sequential or run a batch through it"
        )
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"to_onnx: opset must be an int, got {opset!r}")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"to_onnx: opset must be between {MIN_OPSET} and {newest} (the newest this onnx "
            f"{onnx.__version__} knows), got {opset}"
        )
    opset = int(opset)

    graph = _GraphBuilder(onnx)
    x = INPUT_NAME
    for index, layer in enumerate(model.layers):
        x = _emit_layer(graph, layer, x, index, opset)
    if not model.ends_in_softmax():  # the rule model.predict follows
        x = graph.node("Softmax", [x], "probabilities.Softmax", axis=1)
    # The last node writes the graph output directly.
    last = graph.nodes[-1]
    last.output[0] = OUTPUT_NAME

    float_type = onnx.TensorProto.FLOAT
    graph_proto = onnx.helper.make_graph(
        graph.nodes,
        "convnp_sequential",
        [onnx.helper.make_tensor_value_info(INPUT_NAME, float_type, ["N", *model.input_shape])],
        [onnx.helper.make_tensor_value_info(OUTPUT_NAME, float_type, ["N", *model.output_shape])],
        initializer=graph.initializers,
    )
    opset_id = onnx.helper.make_opsetid("", opset)
    model_proto = onnx.helper.make_model(
        graph_proto,
        opset_imports=[opset_id],
        producer_name="convnp",
        producer_version=__version__,
        doc_string=(
            "convnp Sequential exported by convnp.interop.to_onnx: float32 input "
            f"(N, {', '.join(map(str, model.input_shape))}), output the class probabilities "
            "(softmax along axis 1), as model.predict returns them"
        ),
    )
    model_proto.ir_version = onnx.helper.find_min_ir_version_for([opset_id])
    onnx.checker.check_model(model_proto, full_check=True)
    return model_proto


def _verify(model, path: Path, atol: float) -> None:
    """Run the file in ONNX Runtime on a random batch and compare with ``model.predict``."""
    ort = require("onnxruntime", "convnp.interop.to_onnx(verify=True)", "onnx")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, *model.input_shape)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
    expected = model.predict(x)
    error = float(np.max(np.abs(onnx_out - expected)))
    if not error <= atol:
        raise RuntimeError(
            f"to_onnx: ONNX Runtime's output for {path} differs from model.predict by {error:.3g} (tolerance {atol:g})"
        )


def to_onnx(model, path: str | os.PathLike, opset: int = 17, verify: bool = False, atol: float = 1e-4) -> Path:
    """Write ``model`` as an ONNX file whose output is ``model.predict``'s probabilities.

    Parameters
    ----------
    model : convnp.nn.Sequential
        A built model (float32 or float64; a float64 model's parameters are cast
        to float32, since the graph is float32 throughout).
    path : str or os.PathLike
        Where to write the file (written atomically; folders are created).
    opset : int, default 17
        ONNX opset version (13 or newer). From 17 on, LayerNorm is one
        ``LayerNormalization`` node; below, it is built from standard ops.
    verify : bool, default False
        After writing, run the file in ONNX Runtime (needs ``onnxruntime``) on a
        random batch of 3 and raise ``RuntimeError`` if the probabilities differ
        from ``model.predict``'s by more than ``atol``.
    atol : float, default 1e-4
        Tolerance of ``verify``.

    Returns
    -------
    pathlib.Path
        The path written.

    Notes
    -----
    The graph has one input, "input" (float32, shape ``("N", *model.input_shape)``
    with a dynamic batch size N), and one output, "probabilities" (float32, shape
    ``("N", *model.output_shape)``): the softmax along axis 1 of the model's
    output, appended unless the last layer is ``Softmax``, exactly as
    ``model.predict`` computes it. Feed images as ``model.predict`` sees them
    after its input preparation: float32, NCHW, in [0, 1] for 8-bit pixels.

    Raises
    ------
    ImportError
        When ``onnx`` (or, with ``verify``, ``onnxruntime``) is not installed; the
        message names ``pip install convnp[onnx]``.
    TypeError
        For a layer type without an ONNX export (named with its index).
    """
    model_proto = build_onnx_model(model, opset=opset)
    path = Path(path)
    atomic_write_bytes(path, model_proto.SerializeToString())
    if verify:
        _verify(model, path, atol)
    return path
