"""ONNX's own operator test cases as an oracle: every 2-D CNN case runs through ``convnp.functional``.

``onnx.backend.test.case.node.collect_testcases`` returns the cases every ONNX
backend is checked against: a one-node graph, its inputs and the expected
outputs. For each case of an op convnp supports (``IN_SCOPE``), the node's
attributes are translated into the arguments of the convnp op (with the
same helpers ``from_onnx`` uses for padding, transposed padding and
upsampling) and the op's forward pass must give ONNX's outputs.

A case is either run or listed in ``LEFT_OUT`` with the reason; a test checks
that nothing in scope is silently skipped. Where a case has outputs convnp
does not produce, the docstring of its runner says which outputs are compared.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from convnp import functional as F
from convnp.interop.onnx_attributes import spatial, transposed_padding, upsampling, window_padding

onnx = pytest.importorskip("onnx")
node_cases = pytest.importorskip("onnx.backend.test.case.node")

RTOL, ATOL = 1e-5, 1e-5
# Cases whose expected values are written out rounded are held to ONNX's own tolerance (the case's rtol).
ROUNDED = {"test_averagepool_2d_ceil_last_window_starts_on_pad"}  # four decimals

IN_SCOPE = (
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization",
    "Relu", "LeakyRelu", "Elu", "Sigmoid", "Tanh", "Softmax", "LayerNormalization", "GroupNormalization",
    "Gemm", "Resize",
)  # fmt: skip

NOT_2D = "1-D or 3-D: convnp's ops are 2-D (N, C, H, W)"
HALF_KERNEL = "padding over half the kernel: a window of padding only, which PyTorch (and convnp) refuse"
SHRINKS = "downsampling: Upsample2D enlarges by integer factors"
NOT_INTEGER = "a non-integer upsampling factor: Upsample2D enlarges by integer factors"
OTHER_NEAREST = "a nearest rule that does not copy each pixel into its block (Upsample2D and PyTorch's nearest do)"
OTHER_INTERPOLATION = "an interpolation other than nearest or PyTorch's bilinear (cubic, align_corners, ...)"
LEFT_OUT = {
    "test_convtranspose_1d": NOT_2D,
    "test_convtranspose_3d": NOT_2D,
    "test_maxpool_1d_default": NOT_2D,
    "test_maxpool_3d_default": NOT_2D,
    "test_maxpool_3d_dilations": NOT_2D,
    "test_maxpool_3d_dilations_use_ref_impl": NOT_2D,
    "test_maxpool_3d_dilations_use_ref_impl_large": NOT_2D,
    "test_averagepool_1d_default": NOT_2D,
    "test_averagepool_3d_default": NOT_2D,
    "test_averagepool_3d_dilations_small": NOT_2D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_True": NOT_2D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_False": NOT_2D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True": NOT_2D,
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_False": NOT_2D,
    "test_maxpool_2d_pads": HALF_KERNEL,
    "test_averagepool_2d_pads": HALF_KERNEL,
    "test_averagepool_2d_pads_count_include_pad": HALF_KERNEL,
    "test_maxpool_2d_uint8": "integer images: convnp's ops compute in float32 or float64",
    "test_maxpool_with_argmax_2d_precomputed_pads": "the second output, the flat indices of the maxima",
    "test_maxpool_with_argmax_2d_precomputed_strides": "the second output, the flat indices of the maxima",
    "test_averagepool_2d_dilations": "a dilated average pool: PyTorch's avg_pool2d (and convnp's) has no dilation",
    "test_convtranspose_autopad_same": (
        "SAME_UPPER crops more after the output than before it, which PyTorch's ConvTranspose2d "
        "(padding on both sides, output_padding after) cannot express"
    ),
    "test_gemm_default_matrix_bias": "a bias per row and column: a linear layer's bias is one value per output",
    "test_gemm_transposeA": "transA: a linear layer's input is (N, features), not transposed",
    "test_gemm_all_attributes": "transA: a linear layer's input is (N, features), not transposed",
    "test_resize_downsample_scales_nearest": SHRINKS,
    "test_resize_downsample_sizes_nearest": SHRINKS,
    "test_resize_downsample_scales_linear": SHRINKS,
    "test_resize_downsample_scales_linear_align_corners": SHRINKS,
    "test_resize_downsample_scales_cubic": SHRINKS,
    "test_resize_downsample_scales_cubic_align_corners": SHRINKS,
    "test_resize_downsample_sizes_cubic": SHRINKS,
    "test_resize_downsample_scales_cubic_A_n0p5_exclude_outside": SHRINKS,
    "test_resize_downsample_sizes_linear_pytorch_half_pixel": SHRINKS,
    "test_resize_downsample_scales_linear_antialias": SHRINKS,
    "test_resize_downsample_sizes_linear_antialias": SHRINKS,
    "test_resize_downsample_scales_cubic_antialias": SHRINKS,
    "test_resize_downsample_sizes_cubic_antialias": SHRINKS,
    "test_resize_downsample_sizes_nearest_not_larger": SHRINKS,
    "test_resize_downsample_sizes_nearest_not_smaller": SHRINKS,
    "test_resize_downsample_scales_linear_half_pixel_symmetric": SHRINKS,
    "test_resize_upsample_sizes_nearest": NOT_INTEGER,
    "test_resize_upsample_sizes_nearest_axes_2_3": NOT_INTEGER,
    "test_resize_upsample_sizes_nearest_axes_3_2": NOT_INTEGER,
    "test_resize_upsample_sizes_nearest_not_larger": NOT_INTEGER,
    "test_resize_upsample_sizes_nearest_not_smaller": NOT_INTEGER,
    "test_resize_upsample_sizes_nearest_floor_align_corners": OTHER_NEAREST,
    "test_resize_upsample_sizes_nearest_round_prefer_ceil_asymmetric": OTHER_NEAREST,
    "test_resize_upsample_sizes_nearest_ceil_half_pixel": OTHER_NEAREST,
    "test_resize_upsample_scales_linear_align_corners": OTHER_INTERPOLATION,
    "test_resize_upsample_scales_linear_half_pixel_symmetric": OTHER_INTERPOLATION,
    "test_resize_upsample_scales_cubic": OTHER_INTERPOLATION,
    "test_resize_upsample_scales_cubic_align_corners": OTHER_INTERPOLATION,
    "test_resize_upsample_sizes_cubic": OTHER_INTERPOLATION,
    "test_resize_upsample_scales_cubic_A_n0p5_exclude_outside": OTHER_INTERPOLATION,
    "test_resize_upsample_scales_cubic_asymmetric": OTHER_INTERPOLATION,
    "test_resize_tf_crop_and_resize": OTHER_INTERPOLATION,
    "test_resize_tf_crop_and_resize_extrapolation_value": OTHER_INTERPOLATION,
    "test_resize_tf_crop_and_resize_axes_2_3": OTHER_INTERPOLATION,
    "test_resize_tf_crop_and_resize_axes_3_2": OTHER_INTERPOLATION,
}


def collect() -> list:
    """The one-node cases of the ops in scope (ONNX's test collection warns about its own casts: silenced)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = node_cases.collect_testcases(None)
    return [c for c in cases if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in IN_SCOPE]


CASES = collect()
RUN = [case for case in CASES if case.name not in LEFT_OUT]


def attributes(node) -> dict:
    values = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


# ------------------------------------------------------------------ one runner per op
def run_conv(inputs, attrs):
    x, weight, bias = inputs + [None] * (3 - len(inputs))
    kernel = tuple(weight.shape[2:])
    stride = spatial(attrs.get("strides"), "strides", 1)
    dilation = spatial(attrs.get("dilations"), "dilations", 1)
    padding = window_padding(attrs, kernel, stride, dilation, x.shape[2:])
    return [F.conv2d_forward(x, weight, bias, stride, padding, dilation, attrs.get("group", 1))[0]]


def run_conv_transpose(inputs, attrs):
    x, weight, bias = inputs + [None] * (3 - len(inputs))
    kernel = tuple(weight.shape[2:])
    stride = spatial(attrs.get("strides"), "strides", 1)
    dilation = spatial(attrs.get("dilations"), "dilations", 1)
    padding, output_padding = transposed_padding(attrs, kernel, stride, dilation, x.shape[2:])
    out, _ = F.conv_transpose2d_forward(
        x, weight, bias, stride, padding, output_padding, attrs.get("group", 1), dilation
    )
    return [out]


def pool_arguments(x, attrs):
    kernel = spatial(attrs["kernel_shape"], "kernel_shape", 0)
    stride = spatial(attrs.get("strides"), "strides", 1)  # ONNX's default stride is 1, not the kernel
    dilation = spatial(attrs.get("dilations"), "dilations", 1)
    return kernel, stride, window_padding(attrs, kernel, stride, dilation, x.shape[2:]), dilation


def run_max_pool(inputs, attrs):
    (x,) = inputs
    kernel, stride, padding, dilation = pool_arguments(x, attrs)
    return [F.max_pool2d_forward(x, kernel, stride, padding, dilation, bool(attrs.get("ceil_mode", 0)))[0]]


def run_average_pool(inputs, attrs):
    (x,) = inputs
    kernel, stride, padding, _ = pool_arguments(x, attrs)
    ceil_mode, count_include_pad = bool(attrs.get("ceil_mode", 0)), bool(attrs.get("count_include_pad", 0))
    return [F.avg_pool2d_forward(x, kernel, stride, padding, ceil_mode, count_include_pad)[0]]


def run_global_average_pool(inputs, attrs):
    (x,) = inputs
    return [F.global_avg_pool2d_forward(x)[0][:, :, None, None]]  # ONNX keeps (N, C, 1, 1)


def run_batch_normalization(inputs, attrs):
    """Inference, or training (outputs Y and the running statistics).

    ONNX's ``momentum`` weighs the old running statistic (PyTorch's is 1 - it).
    convnp, like PyTorch, moves the running variance towards the unbiased
    variance m/(m-1) * var, ONNX towards the biased one: the variance is
    compared after taking that difference out.
    """
    x, weight, bias, mean, var = inputs
    eps = attrs.get("epsilon", 1e-5)
    if not attrs.get("training_mode", 0):
        return [F.batch_norm_forward(x, weight, bias, mean, var, training=False, eps=eps)[0]]
    momentum = 1.0 - attrs.get("momentum", 0.9)
    running_mean, running_var = mean.copy(), var.copy()
    out, _ = F.batch_norm_forward(x, weight, bias, running_mean, running_var, True, momentum, eps)
    count = x.size // x.shape[1]
    biased = x.var(axis=(0, 2, 3))
    running_var -= (momentum * biased * (count / (count - 1) - 1)).astype(x.dtype)
    return [out, running_mean, running_var]


def run_softmax(inputs, attrs):
    (x,) = inputs
    return [F.softmax_forward(x, axis=attrs.get("axis", -1))[0]]


def run_layer_normalization(inputs, attrs):
    """Outputs Y and InvStdDev; the optional Mean is not kept by convnp (its backward pass needs x_hat and 1/std)."""
    x, scale, bias = inputs + [None] * (3 - len(inputs))
    axis = attrs.get("axis", -1) % x.ndim
    out, cache = F.layer_norm_forward(x, scale, bias, attrs.get("epsilon", 1e-5), axis)
    inv_std = cache["inv_std"].reshape(*x.shape[:axis], *(1,) * (x.ndim - axis))
    return [out, None, inv_std]


def run_group_normalization(inputs, attrs):
    """Opset 21's scale and bias per channel; opset 18's per group (older onnx's cases) spread over its channels."""
    x, scale, bias = inputs
    groups, channels = attrs["num_groups"], x.shape[1]
    if scale.shape == (groups,) and groups != channels:
        scale, bias = np.repeat(scale, channels // groups), np.repeat(bias, channels // groups)
    return [F.group_norm_forward(x, scale, bias, groups, attrs.get("epsilon", 1e-5))[0]]


def run_gemm(inputs, attrs):
    """A linear layer: out = A @ (alpha * B) + beta * C, C one value per output (or one for all)."""
    a, b, c = inputs + [None] * (3 - len(inputs))
    weight = (b if attrs.get("transB", 0) else b.T) * np.float32(attrs.get("alpha", 1.0))
    bias = None
    if c is not None:
        bias = np.broadcast_to(c.reshape(-1), (weight.shape[0],)) * np.float32(attrs.get("beta", 1.0))
    return [F.linear_forward(a, np.ascontiguousarray(weight), bias)[0]]


def run_resize(inputs, attrs):
    x, _, scales, sizes = inputs + [None] * (4 - len(inputs))  # roi: only tf_crop_and_resize reads it
    scale, mode = upsampling(attrs, x.shape[1:], scales if sizes is None else None, sizes)
    return [F.upsample2d_forward(x, scale, mode)[0]]


def run_activation(forward, **defaults):
    def run(inputs, attrs):
        (x,) = inputs
        return [forward(x, **{key: attrs.get(key, value) for key, value in defaults.items()})[0]]

    return run


RUNNERS = {
    "Conv": run_conv,
    "ConvTranspose": run_conv_transpose,
    "MaxPool": run_max_pool,
    "AveragePool": run_average_pool,
    "GlobalAveragePool": run_global_average_pool,
    "BatchNormalization": run_batch_normalization,
    "Relu": run_activation(F.relu_forward),
    "LeakyRelu": run_activation(F.leaky_relu_forward, alpha=0.01),
    "Elu": run_activation(F.elu_forward, alpha=1.0),
    "Sigmoid": run_activation(F.sigmoid_forward),
    "Tanh": run_activation(F.tanh_forward),
    "Softmax": run_softmax,
    "LayerNormalization": run_layer_normalization,
    "GroupNormalization": run_group_normalization,
    "Gemm": run_gemm,
    "Resize": run_resize,
}


@pytest.mark.parametrize("case", RUN, ids=lambda case: case.name)
def test_onnx_case_runs_through_convnp_functional(case):
    node = case.model.graph.node[0]
    rtol = case.rtol if case.name in ROUNDED else RTOL
    for given, expected in case.data_sets:
        # The data lists the node's given inputs; an optional input left out has an empty name.
        given = iter(given)
        inputs = [next(given) if name else None for name in node.input]
        outputs = RUNNERS[node.op_type](inputs, attributes(node))
        compared = 0
        for name, actual, wanted in zip(node.output, outputs, expected):
            if actual is None:
                continue  # an output convnp does not compute (see the runner's docstring)
            assert actual.dtype == wanted.dtype, name
            np.testing.assert_allclose(actual, wanted, rtol=rtol, atol=ATOL, err_msg=f"{case.name}: {name}")
            compared += 1
        assert compared >= 1


def test_every_case_in_scope_is_run_or_left_out_with_a_reason():
    assert set(RUNNERS) == set(IN_SCOPE)
    assert len(RUN) >= 60, f"only {len(RUN)} of {len(CASES)} ONNX cases in scope ran"  # 91 of 151 with onnx 1.23
    assert all(name.startswith("test_") and reason for name, reason in LEFT_OUT.items())


@pytest.mark.parametrize("name", ["test_maxpool_2d_pads", "test_gemm_transposeA", "test_resize_upsample_scales_cubic"])
def test_left_out_cases_are_refused_with_a_reason_rather_than_computed_wrongly(name):
    """The importer refuses what the runners leave out: a clear error, never a wrong number."""
    from convnp.interop import OnnxImportError, from_onnx

    case = next((case for case in CASES if case.name == name), None)
    if case is None:
        pytest.skip(f"{name} is not among this onnx version's cases")
    model = case.model
    graph = model.graph
    node = graph.node[0]
    # The node's second and later inputs become initializers: the weights and settings of a layer.
    inits = [onnx.numpy_helper.from_array(array, name) for name, array in zip(node.input[1:], case.data_sets[0][0][1:])]
    graph = onnx.helper.make_graph([node], "case", [graph.input[0]], [graph.output[0]], initializer=inits)
    opset = min(model.opset_import[0].version, 21)
    with pytest.raises(OnnxImportError, match=node.op_type):
        from_onnx(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)]))
