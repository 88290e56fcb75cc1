"""ONNX node attributes in convnp's terms: window padding, transposed-convolution padding, upsampling.

The translations ``from_onnx`` (onnx_import.py, onnx_ops.py) and the ONNX
operator test cases (tests/interop/test_onnx_backend_cases.py) share, each
raising ``ValueError`` for a setting convnp cannot express.

    pads = [top, left, bottom, right]      ->  ((top, bottom), (left, right)) (an int or a pair where symmetric)
    auto_pad SAME_UPPER / SAME_LOWER       ->  the same, resolved for the input size
    ConvTranspose pads, output_shape       ->  PyTorch's (padding, output_padding)
    Resize scales or sizes, modes          ->  Upsample2D's (scale_factor, mode)
"""

from __future__ import annotations

import numpy as np

from convnp.functional.geometry import Padding

__all__ = [
    "spatial",
    "simplest_padding",
    "window_padding",
    "transposed_padding",
    "nearest_source_index",
    "upsampling",
]


def spatial(values, name: str, default: int, spatial_dims: int = 2) -> tuple[int, ...]:
    """An attribute with one entry per spatial axis (strides, dilations, kernel_shape); ``default`` when absent."""
    if values is None:
        return (default,) * spatial_dims
    values = tuple(int(v) for v in values)
    if len(values) != spatial_dims:
        raise ValueError(f"{name} must have {spatial_dims} entries (a 2-D op), got {list(values)}")
    return values


def simplest_padding(top: int, bottom: int, left: int, right: int) -> Padding:
    """convnp's padding argument for these four pads: an int, a pair, or ((top, bottom), (left, right))."""
    if top == bottom and left == right:
        return top if top == left else (top, left)
    return ((top, bottom), (left, right))


def window_padding(
    attrs: dict,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    input_hw: tuple[int, int],
) -> Padding:
    """The padding of a Conv or pooling node, from ``pads`` or ``auto_pad``.

    ``auto_pad`` SAME_UPPER / SAME_LOWER pad so that ``H_out = ceil(H / S)``,
    the odd extra row after the input (UPPER, TensorFlow's "SAME") or before it
    (LOWER); VALID pads nothing; NOTSET (the default) reads ``pads``,
    ``[top, left, bottom, right]``.
    """
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        sides = []
        for axis in range(2):
            out = -(-input_hw[axis] // stride[axis])
            span = dilation[axis] * (kernel[axis] - 1) + 1
            total = max((out - 1) * stride[axis] + span - input_hw[axis], 0)
            small, large = total // 2, total - total // 2
            sides += [small, large] if auto_pad == "SAME_UPPER" else [large, small]
        return simplest_padding(*sides)
    if auto_pad == "VALID":
        return 0
    if auto_pad != "NOTSET":
        raise ValueError(f"unknown auto_pad {auto_pad!r}")
    pads = attrs.get("pads", [0, 0, 0, 0])
    if len(pads) != 4:
        raise ValueError(f"pads must have 4 entries (a 2-D op), got {list(pads)}")
    top, left, bottom, right = (int(p) for p in pads)
    return simplest_padding(top, bottom, left, right)


def transposed_padding(
    attrs: dict,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    input_hw: tuple[int, int],
) -> tuple[tuple[int, int], tuple[int, int]]:
    """ConvTranspose's padding as PyTorch's ``(padding, output_padding)``.

    ONNX crops ``begin`` rows before and ``end`` rows after the full output of
    ``S*(H - 1) + output_padding + D*(K - 1) + 1`` rows (``pads``, or from
    ``output_shape``/``auto_pad``: total = full - wanted, split as the ONNX
    reference splits it). PyTorch crops ``padding`` on both sides and adds
    ``output_padding`` rows at the end, so padding = begin and
    output_padding = ONNX's output_padding + begin - end, which PyTorch accepts
    when it is at least 0 and below the stride or the dilation.
    """
    extra = spatial(attrs.get("output_padding"), "output_padding", 0)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    output_shape = attrs.get("output_shape")
    sides = []
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        wanted = spatial(output_shape, "output_shape", 0) if output_shape is not None else None
        for axis in range(2):
            target = wanted[axis] if wanted is not None else input_hw[axis] * stride[axis]
            full = stride[axis] * (input_hw[axis] - 1) + extra[axis] + dilation[axis] * (kernel[axis] - 1) + 1
            total = full - target
            half = total // 2
            sides.append((half, total - half) if auto_pad == "SAME_UPPER" else (total - half, half))
    else:
        if auto_pad not in ("NOTSET", "VALID"):
            raise ValueError(f"unknown auto_pad {auto_pad!r}")
        pads = [0, 0, 0, 0] if auto_pad == "VALID" else [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
        if len(pads) != 4:
            raise ValueError(f"pads must have 4 entries (a 2-D op), got {pads}")
        sides = [(pads[0], pads[2]), (pads[1], pads[3])]
    padding = tuple(begin for begin, _ in sides)
    output_padding = tuple(extra[axis] + sides[axis][0] - sides[axis][1] for axis in range(2))
    for axis in range(2):
        if padding[axis] < 0 or not 0 <= output_padding[axis] < max(stride[axis], dilation[axis]):
            raise ValueError(
                f"crops {sides[axis][0]} rows before and {sides[axis][1]} after the output along spatial axis "
                f"{axis}, which PyTorch's ConvTranspose2d (padding {padding[axis]}, output_padding "
                f"{output_padding[axis]}) cannot express"
            )
    return padding, output_padding


def nearest_source_index(
    out_index: np.ndarray, scale: int, in_size: int, coordinate_mode: str, nearest_mode: str
) -> np.ndarray:
    """The input index ONNX's Resize (mode "nearest") reads for each output index along one axis.

    Maps the output coordinate back (``coordinate_transformation_mode``), then
    rounds it (``nearest_mode``) and clamps it into the input, as the ONNX
    specification writes it.
    """
    out_size = in_size * scale
    x = out_index.astype(np.float64)
    if coordinate_mode == "half_pixel":
        source = (x + 0.5) / scale - 0.5
    elif coordinate_mode == "pytorch_half_pixel":
        source = (x + 0.5) / scale - 0.5 if out_size > 1 else np.zeros_like(x)
    elif coordinate_mode == "asymmetric":
        source = x / scale
    elif coordinate_mode == "tf_half_pixel_for_nn":
        source = (x + 0.5) / scale
    elif coordinate_mode == "align_corners":
        source = x * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros_like(x)
    else:
        raise ValueError(f"coordinate_transformation_mode {coordinate_mode!r} is not supported")
    rounding = {
        "round_prefer_floor": lambda v: np.ceil(v - 0.5),
        "round_prefer_ceil": lambda v: np.floor(v + 0.5),
        "floor": np.floor,
        "ceil": np.ceil,
    }
    if nearest_mode not in rounding:
        raise ValueError(f"nearest_mode {nearest_mode!r} is not supported")
    return np.clip(rounding[nearest_mode](source), 0, in_size - 1).astype(np.int64)


def upsampling(attrs: dict, sample_shape: tuple[int, ...], scales, sizes) -> tuple[tuple[int, int], str]:
    """A Resize node as Upsample2D's ``(scale_factor, mode)``, from its attributes and scales (or sizes).

    ``sample_shape`` is the per-sample input shape (C, H, W). Integer upsampling
    of H and W only; "nearest" where each output pixel reads the input pixel
    ``i // scale`` (checked with ``nearest_source_index``), "linear" with
    half-pixel coordinates (PyTorch's bilinear, align_corners=False).
    ``ValueError`` for anything else.
    """
    mode = attrs.get("mode", "nearest")
    coordinate_mode = attrs.get("coordinate_transformation_mode", "half_pixel")
    if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise ValueError(f"keep_aspect_ratio_policy {attrs['keep_aspect_ratio_policy']!r} is not supported")
    axes = [axis % 4 for axis in attrs.get("axes", [0, 1, 2, 3])]
    full = dict.fromkeys(range(4), 1.0)
    given = np.asarray(sizes if sizes is not None else scales, dtype=np.float64).reshape(-1)
    for axis, value in zip(axes, given):
        if sizes is not None and axis == 0:
            continue  # the batch size: not the model's to choose
        full[axis] = value / ((1, *sample_shape)[axis] if sizes is not None else 1.0)
    integer = all(np.isfinite(full[a]) and full[a] >= 1 and full[a] == round(full[a]) for a in (2, 3))
    if full[0] != 1 or full[1] != 1 or not integer:
        raise ValueError(
            f"only integer upsampling of the two spatial axes is supported, got scales {list(full.values())}"
        )
    scale = (int(full[2]), int(full[3]))
    if mode == "nearest":
        nearest_mode = attrs.get("nearest_mode", "round_prefer_floor")
        for axis in range(2):
            out_index = np.arange(sample_shape[axis + 1] * scale[axis])
            reads = nearest_source_index(out_index, scale[axis], sample_shape[axis + 1], coordinate_mode, nearest_mode)
            if not np.array_equal(reads, out_index // scale[axis]):
                raise ValueError(
                    f"coordinate_transformation_mode {coordinate_mode!r} with nearest_mode {nearest_mode!r} does "
                    "not copy each pixel into its block, as Upsample2D does"
                )
        return scale, "nearest"
    if mode == "linear" and coordinate_mode in ("half_pixel", "pytorch_half_pixel"):
        return scale, "bilinear"
    raise ValueError(f"mode {mode!r} with coordinate_transformation_mode {coordinate_mode!r} is not supported")
