"""ONNX operators as convnp layers: one converter per op, used by ``from_onnx`` (onnx_import.py).

A converter reads one ONNX node through the ``GraphReader`` (the values
computed so far, the constants, the per-sample shapes) and returns the graph
node of the convnp layer that computes the node's output. Weights become the
layer's parameters through ``reader.add_state``; the layer is named after its
weight (``reader.layer_name``) so that the model's state_dict keeps ONNX's names.

    Conv                     Conv2D (pads, auto_pad, strides, dilations, group)
    ConvTranspose            ConvTranspose2D (pads, output_padding, output_shape, auto_pad)
    MaxPool                  MaxPool2D (pads, auto_pad, dilations, ceil_mode)
    AveragePool              AvgPool2D (pads, auto_pad, ceil_mode, count_include_pad)
    GlobalAveragePool        AdaptiveAvgPool2D(1)  (ONNX keeps the (N, C, 1, 1) shape)
    BatchNormalization       BatchNorm2D / BatchNorm1D (momentum m becomes PyTorch's 1 - m)
    GroupNormalization       GroupNorm (opset 18's per-group scale and bias spread over the channels)
    LayerNormalization       LayerNorm(normalized_shape) (axis: the first normalised axis)
    Relu, LeakyRelu, Elu, Sigmoid, Tanh, Softmax(axis)   the layer of the same name
    Gemm                     Dense (alpha and beta folded into the weight and bias; no transA)
    MatMul (+ Add)           Dense (a constant added to the product is its bias)
    Flatten, Reshape         Flatten, when the result is (N, features)
    Reshape (N, G, -1), InstanceNormalization, Reshape back (to Shape(x)), Mul, Add
                             GroupNorm or LayerNorm: group normalisation as PyTorch's exporter writes
                             it (onnx_group_norm.py)
    Add, Concat              Add, Concatenate
    Dropout, Identity        Dropout; nothing
    Slice                    nothing, where it keeps every position (to_onnx writes one after a ceil-mode pool
                             whose size older readers would overcount)
    Resize                   Upsample2D (integer factors; "nearest" and "linear" where they equal PyTorch's)

The attributes' translations (padding, transposed padding, upsampling) are
in onnx_attributes.py.
"""

from __future__ import annotations

import numpy as np

from convnp.interop.onnx_attributes import spatial, transposed_padding, upsampling, window_padding
from convnp.interop.onnx_group_norm import read_group_standardisation
from convnp.nn import (
    ELU,
    AdaptiveAvgPool2D,
    Add,
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Concatenate,
    Conv2D,
    ConvTranspose2D,
    Dense,
    Dropout,
    Flatten,
    GroupNorm,
    LayerNorm,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    Upsample2D,
)

__all__ = ["CONVERTERS", "SUPPORTED_OPS"]


def _image_input(reader, node, what: str = "a 2-D op on (N, C, H, W) inputs"):
    value = reader.tensor(node.input[0])
    if len(value.shape) != 3:
        raise ValueError(f"expects {what}; its input has per-sample shape {value.shape}")
    return value


def _weight(reader, node, index: int, ndim: int, layout: str) -> np.ndarray:
    weight = reader.constant(node.input[index], "its weight")
    if weight.ndim != ndim:
        raise ValueError(f"expects a weight of shape {layout} (a 2-D op), got {weight.shape}")
    return weight


def _optional_input(node, index: int) -> str | None:
    return node.input[index] if len(node.input) > index and node.input[index] else None


def conv(reader, node, attrs):
    x = _image_input(reader, node)
    weight = _weight(reader, node, 1, 4, "(F, C/groups, KH, KW)")
    kernel = tuple(weight.shape[2:])
    stride = spatial(attrs.get("strides"), "strides", 1)
    dilation = spatial(attrs.get("dilations"), "dilations", 1)
    bias_name = _optional_input(node, 2)
    name = reader.layer_name(node.input[1])
    layer = Conv2D(
        weight.shape[0], kernel, stride, window_padding(attrs, kernel, stride, dilation, x.shape[1:]), dilation,
        int(attrs.get("group", 1)), use_bias=bias_name is not None, name=name,
    )  # fmt: skip
    reader.add_state(name, "weight", weight)
    if bias_name is not None:
        reader.add_state(name, "bias", reader.constant(bias_name, "its bias"))
    return layer(x)


def conv_transpose(reader, node, attrs):
    x = _image_input(reader, node)
    weight = _weight(reader, node, 1, 4, "(C, F/groups, KH, KW)")
    kernel = tuple(weight.shape[2:])
    stride = spatial(attrs.get("strides"), "strides", 1)
    dilation = spatial(attrs.get("dilations"), "dilations", 1)
    padding, output_padding = transposed_padding(attrs, kernel, stride, dilation, x.shape[1:])
    groups = int(attrs.get("group", 1))
    bias_name = _optional_input(node, 2)
    name = reader.layer_name(node.input[1])
    layer = ConvTranspose2D(
        weight.shape[1] * groups, kernel, stride, padding, output_padding, groups, dilation,
        use_bias=bias_name is not None, name=name,
    )  # fmt: skip
    reader.add_state(name, "weight", weight)
    if bias_name is not None:
        reader.add_state(name, "bias", reader.constant(bias_name, "its bias"))
    return layer(x)


def _pool_settings(attrs, x):
    kernel = spatial(attrs.get("kernel_shape"), "kernel_shape", 0)
    stride = spatial(attrs.get("strides"), "strides", 1)
    dilation = spatial(attrs.get("dilations"), "dilations", 1)
    padding = window_padding(attrs, kernel, stride, dilation, x.shape[1:])
    return kernel, stride, dilation, padding, bool(attrs.get("ceil_mode", 0))


def max_pool(reader, node, attrs):
    x = _image_input(reader, node)
    if len(node.output) > 1 and node.output[1]:
        raise ValueError("its second output (the indices of the maxima) is not supported")
    kernel, stride, dilation, padding, ceil_mode = _pool_settings(attrs, x)
    return MaxPool2D(kernel, stride, padding, dilation, ceil_mode)(x)


def average_pool(reader, node, attrs):
    x = _image_input(reader, node)
    kernel, stride, dilation, padding, ceil_mode = _pool_settings(attrs, x)
    if dilation != (1, 1):
        raise ValueError(f"dilations {list(dilation)} are not supported in average pooling (PyTorch has none)")
    # ONNX leaves the padding out of the average by default, PyTorch counts it.
    return AvgPool2D(kernel, stride, padding, ceil_mode, bool(attrs.get("count_include_pad", 0)))(x)


def global_average_pool(reader, node, attrs):
    return AdaptiveAvgPool2D(1)(_image_input(reader, node))


def batch_normalization(reader, node, attrs):
    x = reader.tensor(node.input[0])
    if len(node.output) > 1 and any(node.output[1:]):
        raise ValueError("its training-mode outputs (the running statistics) are not supported")
    name = reader.layer_name(node.input[1])
    # ONNX: running = momentum * running + (1 - momentum) * batch; PyTorch weighs the batch by momentum.
    momentum, eps = 1.0 - float(attrs.get("momentum", 0.9)), float(attrs.get("epsilon", 1e-5))
    if len(x.shape) == 3:
        layer = BatchNorm2D(momentum, eps, name=name)
    elif len(x.shape) == 1:
        layer = BatchNorm1D(momentum, eps, name=name)
    else:
        raise ValueError(f"expects (N, C, H, W) or (N, C) inputs, got per-sample shape {x.shape}")
    for index, key in enumerate(("weight", "bias", "running_mean", "running_var"), start=1):
        reader.add_state(name, key, reader.constant(node.input[index], key))
    return layer(x)


def group_normalization(reader, node, attrs):
    x = reader.tensor(node.input[0])
    groups, channels = int(attrs["num_groups"]), x.shape[0]
    name = reader.layer_name(node.input[1])
    layer = GroupNorm(groups, float(attrs.get("epsilon", 1e-5)), name=name)
    for index, key in ((1, "weight"), (2, "bias")):
        value = reader.constant(node.input[index], key).reshape(-1)
        if value.shape == (groups,) and groups != channels:
            value = np.repeat(value, channels // groups)  # opset 18: one value per group
        reader.add_state(name, key, value)
    return layer(x)


def layer_normalization(reader, node, attrs):
    x = reader.tensor(node.input[0])
    axis = int(attrs.get("axis", -1))
    begin = axis if axis >= 0 else axis + len(x.shape) + 1
    if not 1 <= begin <= len(x.shape):
        raise ValueError(f"axis {axis} would normalise over the batch axis, which a layer cannot")
    if len(node.output) > 1 and any(node.output[1:]):
        raise ValueError("its optional outputs (Mean, InvStdDev) are not supported")
    name = reader.layer_name(node.input[1])
    shape = x.shape[begin - 1 :]
    layer = LayerNorm(shape, float(attrs.get("epsilon", 1e-5)), name=name)
    reader.add_state(name, "weight", np.broadcast_to(reader.constant(node.input[1], "its scale"), shape))
    bias_name = _optional_input(node, 2)
    bias = np.zeros(shape) if bias_name is None else reader.constant(bias_name, "its bias")
    reader.add_state(name, "bias", np.broadcast_to(bias, shape))
    return layer(x)


def _activation(cls, **defaults):
    def convert(reader, node, attrs):
        options = {key: float(attrs.get(key, value)) for key, value in defaults.items()}
        return cls(**options)(reader.tensor(node.input[0]))

    return convert


def softmax(reader, node, attrs):
    x = reader.tensor(node.input[0])
    rank = len(x.shape) + 1
    axis = int(attrs.get("axis", -1 if reader.opset >= 13 else 1))
    axis = axis if axis >= 0 else axis + rank
    if reader.opset < 13 and axis != rank - 1:
        # Before opset 13 Softmax normalised over all the axes from ``axis`` on, flattened.
        raise ValueError(f"a softmax over the flattened axes {axis}.. (opset {reader.opset}) is not supported")
    if axis == 0:
        raise ValueError("a softmax over the batch axis is not supported")
    return Softmax(axis)(x)


def gemm(reader, node, attrs):
    x = reader.tensor(node.input[0])
    if attrs.get("transA", 0):
        raise ValueError("transA=1 (the input transposed) is not supported")
    if len(x.shape) != 1:
        raise ValueError(f"expects (N, features) inputs, got per-sample shape {x.shape}")
    weight = reader.constant(node.input[1], "its weight B") * float(attrs.get("alpha", 1.0))
    weight = weight if attrs.get("transB", 0) else weight.T  # Dense keeps (out, in)
    bias_name = _optional_input(node, 2)
    bias = None
    if bias_name is not None:
        bias = _vector_bias(reader.constant(bias_name, "its bias C"), weight.shape[0])
        bias = bias * float(attrs.get("beta", 1.0))
    return _dense(reader, node.input[1], x, weight, bias)


def _vector_bias(value: np.ndarray, features: int) -> np.ndarray:
    """A bias added to every row: shape (), (1,), (F,) or (1, F), as an (F,) vector."""
    if value.size not in (1, features) or (value.ndim == 2 and value.shape[0] != 1) or value.ndim > 2:
        raise ValueError(f"a bias of shape {value.shape} (not one value per output feature) is not supported")
    return np.broadcast_to(value.reshape(-1), (features,))


def _dense(reader, weight_name: str, x, weight: np.ndarray, bias: np.ndarray | None):
    if weight.ndim != 2 or weight.shape[1] != x.shape[0]:
        raise ValueError(f"a weight of shape {weight.shape} does not fit inputs of {x.shape[0]} features")
    name = reader.layer_name(weight_name)
    reader.add_state(name, "weight", weight)
    if bias is not None:
        reader.add_state(name, "bias", bias)
    return Dense(weight.shape[0], use_bias=bias is not None, name=name)(x)


def matmul(reader, node, attrs):
    """x @ W, and a constant added right after it as the bias (how TensorFlow and Keras write a dense layer)."""
    x = reader.tensor(node.input[0])
    if len(x.shape) != 1:
        raise ValueError(f"expects (N, features) inputs, got per-sample shape {x.shape}")
    weight = reader.constant(node.input[1], "its weight").T  # (in, out) -> Dense's (out, in)
    bias = None
    adder, bias_name = reader.constant_operand(node.output[0], "Add")
    if adder is not None:
        bias = _vector_bias(reader.constant(bias_name, "the bias"), weight.shape[0])
        reader.fold_into(adder, node)
    return _dense(reader, node.input[1], x, weight, bias)


def _flat(reader, x):
    return x if len(x.shape) == 1 else Flatten()(x)


def flatten(reader, node, attrs):
    x = reader.tensor(node.input[0])
    if int(attrs.get("axis", 1)) not in (1, -len(x.shape)):
        raise ValueError(f"axis {attrs.get('axis')} is not supported: only (N, features) results (axis 1)")
    return _flat(reader, x)


def reshape(reader, node, attrs):
    x = reader.tensor(node.input[0])
    shape = [int(d) for d in reader.constant(node.input[1], "its shape")]
    features = int(np.prod(x.shape))
    if len(shape) == 3 and shape[0] in (0, reader.batch_size) and shape[2] in (-1, features // max(shape[1], 1)):
        return read_group_standardisation(reader, node, x, shape)  # (N, G, -1): group norm's first node
    if len(shape) != 2 or shape[1] not in (-1, features) or shape[0] not in (0, -1, reader.batch_size):
        raise ValueError(f"only a reshape to (N, features) is supported, got shape {shape} for (N, *{x.shape})")
    return _flat(reader, x)


def add(reader, node, attrs):
    if any(reader.is_constant(name) for name in node.input):
        raise ValueError("adding a constant is supported only as the bias of a MatMul right before it")
    return Add()([reader.tensor(name) for name in node.input])


def concat(reader, node, attrs):
    xs = [reader.tensor(name) for name in node.input]
    axis = int(attrs["axis"])
    if axis == 0 or axis == -(len(xs[0].shape) + 1):
        raise ValueError("a concatenation along the batch axis is not supported")
    return Concatenate(axis)(xs)


def dropout(reader, node, attrs):
    if len(node.output) > 1 and node.output[1]:
        raise ValueError("its mask output is not supported")
    ratio_name = _optional_input(node, 1)
    ratio = float(attrs.get("ratio", 0.5)) if ratio_name is None else float(reader.constant(ratio_name, "its ratio"))
    x = reader.tensor(node.input[0])
    return Dropout(ratio)(x) if ratio > 0 else x


def identity(reader, node, attrs):
    return reader.tensor(node.input[0])


def slice_whole(reader, node, attrs):
    """A Slice that keeps every position of its input: the input itself; anything else is refused."""
    x = reader.tensor(node.input[0])
    rank = len(x.shape) + 1
    starts, ends = (reader.constant(node.input[index], what) for index, what in ((1, "its starts"), (2, "its ends")))
    axes_name, steps_name = _optional_input(node, 3), _optional_input(node, 4)
    axes = range(len(starts)) if axes_name is None else reader.constant(axes_name, "its axes")
    steps = np.ones(len(starts)) if steps_name is None else reader.constant(steps_name, "its steps")
    for axis, start, end, step in zip(axes, starts, ends, steps):
        axis = int(axis) % rank
        size = None if axis == 0 else x.shape[axis - 1]
        # ONNX clamps: a start at or before -size is 0, an end at or past the size is the size
        # (the batch size is unknown: there only the largest int64 keeps everything).
        from_start = start == 0 or (size is not None and start <= -size)
        to_end = end >= (np.iinfo(np.int64).max if size is None else size)
        if not (step == 1 and from_start and to_end):
            raise ValueError(
                f"only a Slice that keeps every position is supported, got starts {list(starts)}, ends {list(ends)}, "
                f"axes {list(axes)}, steps {list(steps)} for (N, *{x.shape})"
            )
    return x


def resize(reader, node, attrs):
    x = _image_input(reader, node)
    scales_name, sizes_name = _optional_input(node, 2), _optional_input(node, 3)
    if sizes_name is None and scales_name is None:
        raise ValueError("it has neither scales nor sizes")
    sizes = None if sizes_name is None else reader.constant(sizes_name, "its sizes")
    scales = None if sizes is not None else reader.constant(scales_name, "its scales")
    scale, mode = upsampling(attrs, x.shape, scales, sizes)
    return Upsample2D(scale, mode)(x)


CONVERTERS = {
    "Conv": conv,
    "ConvTranspose": conv_transpose,
    "MaxPool": max_pool,
    "AveragePool": average_pool,
    "GlobalAveragePool": global_average_pool,
    "BatchNormalization": batch_normalization,
    "GroupNormalization": group_normalization,
    "LayerNormalization": layer_normalization,
    "Relu": _activation(ReLU),
    "LeakyRelu": _activation(LeakyReLU, alpha=0.01),
    "Elu": _activation(ELU, alpha=1.0),
    "Sigmoid": _activation(Sigmoid),
    "Tanh": _activation(Tanh),
    "Softmax": softmax,
    "Gemm": gemm,
    "MatMul": matmul,
    "Flatten": flatten,
    "Reshape": reshape,
    "Add": add,
    "Concat": concat,
    "Dropout": dropout,
    "Identity": identity,
    "Resize": resize,
    "Slice": slice_whole,
}
SUPPORTED_OPS = tuple(sorted(CONVERTERS))
