"""The ONNX nodes of each convnp layer, for ``onnx_export.py``.

Layer by layer (``W``, ``b`` are the layer's own arrays, stored as float32
initializers named like the state_dict keys, e.g. "0.weight",
"layer1.0.conv1.weight"; node names start with the layer's key too):

    Conv2D             Conv(strides, pads, dilations, group), then its fused activation
    ConvTranspose2D    ConvTranspose(strides, pads, output_padding, dilations, group)
    MaxPool2D          MaxPool(kernel_shape, strides, pads, dilations, ceil_mode)
    AvgPool2D          AveragePool(kernel_shape, strides, pads, ceil_mode, count_include_pad)
                       (ceil mode: see _emit_pool)
    GlobalAvgPool2D    GlobalAveragePool, Flatten(axis=1)
    AdaptiveAvgPool2D  AveragePool(kernel = stride = H/H_out, W/W_out) where the bins divide the
                       input evenly; otherwise MatMul(A_h, x), MatMul(., A_w^T) with the bin-averaging
                       matrices A[i, j] = 1/len(bin i) for j in bin i (the pool is separable)
    Upsample2D         Resize(scales=[1, 1, SH, SW]): "nearest" as nearest with asymmetric
                       coordinates and floor rounding (src = floor(dst / S), PyTorch's rule),
                       "bilinear" as linear with half_pixel coordinates
    Dense              Gemm(x, W, b, transB=1), then its fused activation
    Flatten            Flatten(axis=1)
    BatchNorm1D/2D     BatchNormalization (inference form: running_mean, running_var)
    GroupNorm          Reshape(N, G, -1), InstanceNormalization, Reshape back, Mul, Add
    LayerNorm          LayerNormalization(axis=begin_axis) (opset >= 17); below, Reshape(N, P, -1),
                       InstanceNormalization, Reshape back, Mul, Add, P the size of the axes before begin_axis
    ReLU, LeakyReLU, ELU, Sigmoid, Tanh, Softmax(axis)   the ONNX op of the same name
    Gaussian           Exp(Neg(Mul(x, x)))
    Dropout, Identity  Identity (dropout: inference)
    Add                Add (chained for more than two inputs)
    Concatenate(axis)  Concat(axis)
    Residual           its body's and shortcut's nodes inlined (keys "<key>.body.0", ...), then Add

Padding becomes explicit pads [top, left, bottom, right] for the model's input
size: "same" resolved, per-side padding ((top, bottom), (left, right)) as it is.
"""

from __future__ import annotations

import numpy as np

from convnp.functional.geometry import adaptive_bins, normalize_padding, pooled_output_size
from convnp.nn.activations import ELU, Gaussian, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from convnp.nn.blocks import Residual
from convnp.nn.conv import Conv2D
from convnp.nn.conv_transpose import ConvTranspose2D
from convnp.nn.dense import Dense, Flatten
from convnp.nn.dropout import Dropout
from convnp.nn.layer import Layer
from convnp.nn.merge import Add, Concatenate, Identity
from convnp.nn.normalization import BatchNorm1D, BatchNorm2D, GroupNorm, LayerNorm
from convnp.nn.pooling import AdaptiveAvgPool2D, AvgPool2D, GlobalAvgPool2D, MaxPool2D
from convnp.nn.upsample import Upsample2D

__all__ = ["GraphBuilder", "emit_layer", "INPUT_NAME", "OUTPUT_NAME"]

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


class GraphBuilder:
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


def _window_pads(layer: Layer) -> list[int]:
    """The explicit pads of a conv or pool for its built input size ("same" resolved), in ONNX's order.

    convnp's (top, bottom, left, right) become ONNX's [top, left, bottom, right].
    """
    top, bottom, left, right = normalize_padding(
        layer.padding, layer.kernel_size, layer.stride, layer.dilation, layer.input_shape[1:], layer.label
    )
    return [top, left, bottom, right]


def _emit_activation(graph: GraphBuilder, layer: Layer, x: str, prefix: str) -> str | None:
    """Nodes of a parameter-free elementwise layer (an activation, Dropout, Identity); None for any other."""
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
        return graph.node("Softmax", [x], f"{prefix}Softmax", axis=layer.axis)
    if isinstance(layer, Dropout):  # inverted dropout is the identity in inference
        return graph.node("Identity", [x], f"{prefix}Dropout")
    if isinstance(layer, Identity):
        return graph.node("Identity", [x], f"{prefix}Identity")
    return None


def _per_channel(array: np.ndarray, sample_ndim: int) -> np.ndarray:
    """(C,) -> (C, 1, ..., 1) so it broadcasts against (N, C, ...) with ``sample_ndim`` axes."""
    return array.reshape(array.shape[0], *([1] * (sample_ndim - 1)))


def _emit_group_standardise(graph: GraphBuilder, x: str, groups: int, eps: float, prefix: str) -> str:
    """(x - mean[n, g]) / sqrt(var[n, g] + eps) over each of ``groups`` equal, consecutive slices of a sample.

    Reshape to (N, G, -1), InstanceNormalization (which standardises each (n, g)
    row) with unit scale and zero shift, then Reshape back to x's shape. Group
    norm's groups of channels, and layer norm's slices over its trailing axes
    (G = the size of the axes before them), are both such slices.
    """
    group_shape = graph.constant(f"{prefix}group_shape", np.array([0, groups, -1]), np.int64)
    grouped = graph.node("Reshape", [x, group_shape], f"{prefix}Reshape")  # (N, G, size / G)
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


def _emit_affine(graph: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, prefix: str) -> str:
    scaled = graph.node("Mul", [x, graph.constant(f"{prefix}weight", weight)], f"{prefix}Mul")
    return graph.node("Add", [scaled, graph.constant(f"{prefix}bias", bias)], f"{prefix}Add")


def _bin_matrix(size: int, out_size: int) -> np.ndarray:
    """(out_size, size): row i averages PyTorch's adaptive bin i of an axis of ``size``."""
    matrix = np.zeros((out_size, size))
    for row, (start, end) in enumerate(adaptive_bins(size, out_size)):
        matrix[row, start:end] = 1.0 / (end - start)
    return matrix


def _emit_adaptive_pool(graph: GraphBuilder, layer: AdaptiveAvgPool2D, x: str, prefix: str) -> str:
    (height, width), (h_out, w_out) = layer.input_shape[1:], layer.output_shape[1:]
    if height % h_out == 0 and width % w_out == 0:  # equal, disjoint bins: a plain average pool
        kernel = [height // h_out, width // w_out]
        return graph.node("AveragePool", [x], f"{prefix}AveragePool", kernel_shape=kernel, strides=kernel)
    # out[n, c, i, j] = sum over (p, q) of A_h[i, p] * x[n, c, p, q] * A_w[j, q]
    rows = graph.node("MatMul", [graph.constant(f"{prefix}rows", _bin_matrix(height, h_out)), x], f"{prefix}MatMul")
    columns = graph.constant(f"{prefix}columns", _bin_matrix(width, w_out).T)
    return graph.node("MatMul", [rows, columns], f"{prefix}MatMul")  # (N, C, H_out, W_out)


def _emit_upsample(graph: GraphBuilder, layer: Upsample2D, x: str, prefix: str) -> str:
    scales = graph.constant(f"{prefix}scales", np.array([1, 1, *layer.scale_factor]))
    if layer.mode == "nearest":
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    return graph.node("Resize", [x, "", scales], f"{prefix}Resize", **attrs)  # "": no region of interest


def _conv_inputs(graph: GraphBuilder, layer: Layer, x: str, prefix: str) -> list[str]:
    inputs = [x, graph.constant(f"{prefix}weight", layer.weight.data)]
    if layer.bias is not None:
        inputs.append(graph.constant(f"{prefix}bias", layer.bias.data))
    return inputs


def _emit_residual(graph: GraphBuilder, layer: Residual, x: str, key: str, where: str, opset: int) -> str:
    body = x
    for index, sublayer in enumerate(layer.body):
        body = emit_layer(graph, sublayer, [body], f"{key}.body.{index}", f"{where}, body.{index}", opset)
    skip = x
    for index, sublayer in enumerate(layer.shortcut or ()):
        skip = emit_layer(graph, sublayer, [skip], f"{key}.shortcut.{index}", f"{where}, shortcut.{index}", opset)
    return graph.node("Add", [body, skip], f"{key}.Add")


def emit_layer(graph: GraphBuilder, layer: Layer, inputs: list[str], key: str, where: str, opset: int) -> str:
    """Append the nodes of one layer reading tensors ``inputs``; returns the output tensor's name.

    ``key`` is the layer's state_dict key (its name or position), which starts
    the names of its initializers and nodes; ``where`` names it in errors ("layer 3").
    """
    prefix = f"{key}."
    if isinstance(layer, Add):
        out = inputs[0]
        for other in inputs[1:]:
            out = graph.node("Add", [out, other], f"{prefix}Add")
        return out
    if isinstance(layer, Concatenate):
        return graph.node("Concat", inputs, f"{prefix}Concat", axis=layer.axis)
    if layer.multi_input:
        raise TypeError(f"to_onnx: {where} ({type(layer).__name__}) has no ONNX export")
    (x,) = inputs
    elementwise = _emit_activation(graph, layer, x, prefix)
    if elementwise is not None:
        return elementwise

    if isinstance(layer, Residual):
        return _emit_residual(graph, layer, x, key, where, opset)
    if isinstance(layer, Conv2D):
        out = graph.node(
            "Conv", _conv_inputs(graph, layer, x, prefix), f"{prefix}Conv",
            kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
            pads=_window_pads(layer), dilations=list(layer.dilation),
            group=layer.groups,
        )  # fmt: skip
        return _emit_fused(graph, layer, out, prefix, where)
    if isinstance(layer, ConvTranspose2D):  # the weight layout (C_in, C_out/groups, KH, KW) is ONNX's too
        return graph.node(
            "ConvTranspose", _conv_inputs(graph, layer, x, prefix), f"{prefix}ConvTranspose",
            kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
            pads=[*layer.padding, *layer.padding], output_padding=list(layer.output_padding),
            dilations=list(layer.dilation), group=layer.groups,
        )  # fmt: skip
    if isinstance(layer, Dense):
        out = graph.node("Gemm", _conv_inputs(graph, layer, x, prefix), f"{prefix}Gemm", transB=1)  # x @ W.T + b
        return _emit_fused(graph, layer, out, prefix, where)
    if isinstance(layer, (MaxPool2D, AvgPool2D)):
        return _emit_pool(graph, layer, x, prefix)
    if isinstance(layer, GlobalAvgPool2D):
        pooled = graph.node("GlobalAveragePool", [x], f"{prefix}GlobalAveragePool")  # (N, C, 1, 1)
        return graph.node("Flatten", [pooled], f"{prefix}Flatten", axis=1)  # (N, C)
    if isinstance(layer, AdaptiveAvgPool2D):
        return _emit_adaptive_pool(graph, layer, x, prefix)
    if isinstance(layer, Upsample2D):
        return _emit_upsample(graph, layer, x, prefix)
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
        return _emit_layer_norm(graph, layer, x, prefix, opset)
    raise TypeError(
        f"to_onnx: {where} ({type(layer).__name__}) has no ONNX export; supported layers: every layer of "
        "convnp.nn (see docs/interop.md)"
    )


def _emit_fused(graph: GraphBuilder, layer: Layer, x: str, prefix: str, where: str) -> str:
    """The fused ``activation`` of a Conv2D or Dense, if any, as its own nodes."""
    if layer.activation is None:
        return x
    out = _emit_activation(graph, layer.activation, x, f"{prefix}activation.")
    if out is None:
        raise TypeError(
            f"to_onnx: {where} ({type(layer).__name__}) has a fused activation "
            f"{type(layer.activation).__name__} with no ONNX export"
        )
    return out


def _emit_pool(graph: GraphBuilder, layer: MaxPool2D | AvgPool2D, x: str, prefix: str) -> str:
    """MaxPool or AveragePool with every option of the layer, ceil mode written so that every ONNX reader agrees.

    PyTorch, convnp and ONNX Runtime drop a ceil-mode window that would start in
    the padding after the input (so does ONNX's specification); onnx's shape
    inference, and other readers that apply the bare formula
    ceil((H + PT + PB - DH*(KH-1) - 1) / SH) + 1, count it. So ceil_mode=1 is
    written only where ceil mode adds a window (elsewhere the windows are the
    floor mode's, ceil_mode=0). Where it adds one along one axis while the formula
    would count a dropped window along the other, a Slice keeps the first H_out, W_out
    positions: readers that drop the window already have exactly those.
    """
    input_hw, pads = layer.input_shape[1:], _window_pads(layer)
    top, left, bottom, right = pads
    attrs = {"kernel_shape": list(layer.kernel_size), "strides": list(layer.stride), "pads": pads}
    if isinstance(layer, MaxPool2D):
        attrs["dilations"] = list(layer.dilation)
    else:
        attrs["count_include_pad"] = int(layer.count_include_pad)
    out_hw = layer.output_shape[1:]
    floor_hw = [
        pooled_output_size(input_hw[a], layer.kernel_size[a], layer.stride[a], before, after, layer.dilation[a], False)
        for a, (before, after) in enumerate([(top, bottom), (left, right)])
    ]
    ceil_mode = any(out != floor for out, floor in zip(out_hw, floor_hw))
    attrs["ceil_mode"] = int(ceil_mode)
    op_type = "MaxPool" if isinstance(layer, MaxPool2D) else "AveragePool"
    out = graph.node(op_type, [x], f"{prefix}{op_type}", **attrs)
    if not ceil_mode:
        return out
    formula_hw = [
        -(-(size + before + after - dilation * (kernel - 1) - 1) // stride) + 1
        for size, before, after, kernel, stride, dilation in zip(
            input_hw, (top, left), (bottom, right), layer.kernel_size, layer.stride, layer.dilation
        )
    ]
    if formula_hw == list(out_hw):
        return out
    starts = graph.constant(f"{prefix}starts", np.zeros(2), np.int64)
    ends = graph.constant(f"{prefix}ends", np.array(out_hw), np.int64)
    axes = graph.constant(f"{prefix}axes", np.array([2, 3]), np.int64)
    return graph.node("Slice", [out, starts, ends, axes], f"{prefix}Slice")  # (N, C, H_out, W_out)


def _emit_layer_norm(graph: GraphBuilder, layer: LayerNorm, x: str, prefix: str, opset: int) -> str:
    """LayerNormalization over the axes from ``begin_axis`` on (opset >= 17); below 17, the same from older ops.

    The weight and bias have the normalised axes' shape and broadcast against
    the trailing axes of (N, ...), in ONNX as in NumPy.
    """
    if opset >= 17:
        inputs = [
            x,
            graph.constant(f"{prefix}weight", layer.weight.data),
            graph.constant(f"{prefix}bias", layer.bias.data),
        ]
        return graph.node(
            "LayerNormalization", inputs, f"{prefix}LayerNormalization",
            axis=layer.begin_axis, epsilon=float(layer.eps),
        )  # fmt: skip
    slices = int(np.prod(layer.input_shape[: layer.begin_axis - 1]))  # 1 when every per-sample axis is normalised
    standardised = _emit_group_standardise(graph, x, slices, layer.eps, prefix)
    return _emit_affine(graph, standardised, layer.weight.data, layer.bias.data, prefix)
