"""Window geometry shared by every convolution and pooling op.

One place defines how kernel sizes, strides, dilations and paddings are
normalised, how big an output is, and how the sliding windows of an input are
laid out in memory. Every layer calls these helpers; none re-derives them.

The fast ops work channels-last (see ``convnp/functional/conv.py``). Shape of
a window view (what ``sliding_windows`` returns):
    x_padded: (N, H + PT + PB, W + PL + PR, C)
    windows:  (N, H_out, W_out, KH, KW, C)
    windows[n, i, j, p, q, c] = x_padded[n, i*SH + p*DH, j*SW + q*DW, c]
"""

from __future__ import annotations

import numpy as np

IntPair = int | tuple[int, int]
#: An int, a pair (PH, PW), "valid", "same", or ((top, bottom), (left, right)) (numpy.pad's convention).
Padding = int | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]] | str

__all__ = [
    "pair",
    "normalize_padding",
    "padding_argument",
    "padding_config",
    "output_size",
    "conv_geometry",
    "transposed_output_size",
    "check_output_padding",
    "conv_transpose_geometry",
    "adaptive_output_hw",
    "adaptive_bins",
    "pool_geometry",
    "pooled_output_size",
    "pool_window_pads",
    "window_counts",
    "check_pool_padding",
    "pad_spatial",
    "pad_channels_last",
    "sliding_windows",
]


def pair(value: IntPair, name: str, owner: str = "", minimum: int = 1) -> tuple[int, int]:
    """Turn ``value`` (an int or a pair of ints) into ``(height, width)``.

    Raises ``ValueError``/``TypeError`` naming ``owner`` and ``name`` when a value
    is not an integer or is below ``minimum``.
    """
    prefix = f"{owner}: " if owner else ""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        values = tuple(value)
        for v in values:
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise TypeError(f"{prefix}{name} must be an int or a pair of ints, got {value!r}")
        values = (int(values[0]), int(values[1]))
    else:
        raise TypeError(f"{prefix}{name} must be an int or a pair of ints, got {value!r}")
    if min(values) < minimum:
        raise ValueError(f"{prefix}{name} must be >= {minimum}, got {value!r}")
    return values


def _is_side_pairs(padding) -> bool:
    """Whether ``padding`` is written per side, ``((top, bottom), (left, right))``."""
    return (
        isinstance(padding, (tuple, list))
        and len(padding) == 2
        and all(isinstance(axis, (tuple, list)) for axis in padding)
    )


def normalize_padding(
    padding: Padding,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    input_hw: tuple[int, int] | None = None,
    owner: str = "",
) -> tuple[int, int, int, int]:
    """Return the padding as ``(top, bottom, left, right)``.

    ``padding`` is an int, a pair ``(ph, pw)``, ``((top, bottom), (left, right))``
    (numpy.pad's convention, for asymmetric padding such as Keras's "same"),
    ``"valid"`` (no padding) or ``"same"``. ``"same"`` pads so that
    ``H_out = ceil(H / S)``; with stride 1 that is ``H_out = H`` and the padding
    is ``DH*(KH-1)`` split as PyTorch splits it (the odd extra row or column
    goes to the bottom/right). With stride > 1 the amount depends on the input
    size, so ``input_hw`` is needed.
    """
    prefix = f"{owner}: " if owner else ""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode != "same":
            raise ValueError(
                f"{prefix}padding must be an int, a pair, ((top, bottom), (left, right)), 'valid' or 'same', "
                f"got {padding!r}"
            )
        pads = []
        for axis in range(2):
            span = dilation[axis] * (kernel_size[axis] - 1) + 1
            if stride[axis] == 1:
                total = span - 1
            else:
                if input_hw is None:
                    raise ValueError(f"{prefix}padding='same' with stride > 1 needs the input size")
                size = input_hw[axis]
                out = -(-size // stride[axis])
                total = max((out - 1) * stride[axis] + span - size, 0)
            pads.extend([total // 2, total - total // 2])
        return (pads[0], pads[1], pads[2], pads[3])
    if _is_side_pairs(padding):
        top, bottom = pair(tuple(padding[0]), "padding", owner, minimum=0)
        left, right = pair(tuple(padding[1]), "padding", owner, minimum=0)
        return (top, bottom, left, right)
    ph, pw = pair(padding, "padding", owner, minimum=0)
    return (ph, ph, pw, pw)


def padding_argument(padding: Padding, owner: str = "") -> Padding:
    """A layer's ``padding`` argument checked and kept in one form: a str, an int, a pair, or a pair of pairs.

    Lists (as a JSON config holds them) become tuples; ``"same"`` is resolved
    later, when the input size is known. Raises ``TypeError``/``ValueError``
    naming ``owner`` for anything ``normalize_padding`` refuses.
    """
    if isinstance(padding, str):
        normalize_padding(padding if padding.lower() != "same" else "valid", (1, 1), (1, 1), (1, 1), owner=owner)
        return padding
    top, bottom, left, right = normalize_padding(padding, (1, 1), (1, 1), (1, 1), owner=owner)
    if _is_side_pairs(padding):
        return ((top, bottom), (left, right))
    if isinstance(padding, (int, np.integer)):
        return int(padding)
    return (top, left)


def padding_config(padding: Padding) -> str | int | list:
    """A ``padding_argument`` as JSON: tuples become (nested) lists."""
    if isinstance(padding, tuple):
        return [list(axis) if isinstance(axis, tuple) else axis for axis in padding]
    return padding


def output_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int) -> int:
    """``floor((size + pad_total - dilation*(kernel-1) - 1) / stride) + 1``."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def conv_geometry(
    input_hw: tuple[int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: Padding,
    dilation: tuple[int, int],
    owner: str = "",
    input_shape: tuple[int, ...] | None = None,
) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """Resolve the padding and the output size of a sliding-window op.

    Returns ``((top, bottom, left, right), (H_out, W_out))``. Raises
    ``ValueError`` naming ``owner``, the input shape and the parameters when the
    output would be empty.
    """
    pads = normalize_padding(padding, kernel_size, stride, dilation, input_hw, owner)
    h_out = output_size(input_hw[0], kernel_size[0], stride[0], pads[0] + pads[1], dilation[0])
    w_out = output_size(input_hw[1], kernel_size[1], stride[1], pads[2] + pads[3], dilation[1])
    _check_not_empty((h_out, w_out), input_hw, kernel_size, stride, padding, dilation, owner, input_shape)
    return pads, (h_out, w_out)


def _check_not_empty(out_hw, input_hw, kernel_size, stride, padding, dilation, owner, input_shape, extra="") -> None:
    """``ValueError`` naming ``owner``, the input shape and the parameters when an output size is below 1."""
    if min(out_hw) < 1:
        shape = input_shape if input_shape is not None else input_hw
        raise ValueError(
            f"{owner or 'window op'}: input of shape {tuple(shape)} is too small for "
            f"kernel_size={kernel_size}, stride={stride}, padding={padding!r}, "
            f"dilation={dilation}{extra}: output size would be {tuple(out_hw)}"
        )


def transposed_output_size(
    size: int, kernel: int, stride: int, padding: int, dilation: int, output_padding: int
) -> int:
    """``(size - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1``.

    The output size of a transposed convolution: the input size of the
    convolution (same kernel, stride, padding, dilation) that has ``size``
    output positions. Up to ``stride`` input sizes give that many positions
    (``output_size`` floors); ``output_padding`` picks one of them.
    """
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def check_output_padding(
    output_padding: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int], owner: str = ""
) -> None:
    """A transposed convolution's output padding is smaller than the stride or the dilation of its axis.

    PyTorch's rule; ``ValueError`` naming ``owner`` otherwise.
    """
    for axis in range(2):
        if output_padding[axis] >= max(stride[axis], dilation[axis]):
            raise ValueError(
                f"{owner or 'conv_transpose2d'}: output_padding {output_padding} must be smaller than "
                f"either stride {stride} or dilation {dilation} in each axis"
            )


def conv_transpose_geometry(
    input_hw: tuple[int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    output_padding: tuple[int, int],
    dilation: tuple[int, int],
    owner: str = "",
    input_shape: tuple[int, ...] | None = None,
) -> tuple[int, int]:
    """Check a transposed convolution's settings and return its output size ``(H_out, W_out)``.

    Raises ``ValueError`` naming ``owner`` for an output padding that
    ``check_output_padding`` rejects, or when the output would be empty.
    """
    check_output_padding(output_padding, stride, dilation, owner)
    out_hw = tuple(
        transposed_output_size(input_hw[a], kernel_size[a], stride[a], padding[a], dilation[a], output_padding[a])
        for a in range(2)
    )
    if min(out_hw) < 1:
        shape = input_shape if input_shape is not None else input_hw
        raise ValueError(
            f"{owner or 'conv_transpose2d'}: input of shape {tuple(shape)} with kernel_size={kernel_size}, "
            f"stride={stride}, padding={padding}, output_padding={output_padding}, dilation={dilation}: "
            f"output size would be {out_hw}"
        )
    return out_hw


def adaptive_output_hw(
    output_size: int | tuple[int | None, int | None], input_hw: tuple[int, int] | None = None, owner: str = ""
) -> tuple[int | None, int | None]:
    """An adaptive pool's output size ``(H_out, W_out)``.

    ``output_size`` is an int (both axes) or a pair whose entries are ints or
    None; None keeps that axis's input size (taken from ``input_hw``, or left
    None when it is not given). Raises ``TypeError``/``ValueError`` naming ``owner``.
    """
    prefix = f"{owner}: " if owner else ""
    if isinstance(output_size, (int, np.integer)) and not isinstance(output_size, bool):
        sizes = [output_size, output_size]
    elif isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        sizes = list(output_size)
    else:
        raise TypeError(f"{prefix}output_size must be an int or a pair of ints or None, got {output_size!r}")
    for axis, size in enumerate(sizes):
        if size is None:
            sizes[axis] = None if input_hw is None else int(input_hw[axis])
        elif isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise TypeError(f"{prefix}output_size must be an int or a pair of ints or None, got {output_size!r}")
        elif size < 1:
            raise ValueError(f"{prefix}output_size must be >= 1, got {output_size!r}")
        else:
            sizes[axis] = int(size)
    return sizes[0], sizes[1]


def adaptive_bins(size: int, out_size: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive-pooling bins along one axis: ``(start, end)`` of bin i, end exclusive.

    ``start = floor(i*size / out_size)``, ``end = ceil((i + 1)*size / out_size)``:
    the bins cover the axis, each at least one wide; neighbours overlap by a
    position where out_size does not divide size (and repeat positions when
    out_size > size).
    """
    return [((i * size) // out_size, -(-((i + 1) * size) // out_size)) for i in range(out_size)]


def check_pool_padding(
    pads: tuple[int, int, int, int], kernel_size: tuple[int, int], padding: Padding, owner: str = ""
) -> None:
    """A pooling window may not consist of padding only: each pad is at most half the kernel (PyTorch's rule)."""
    if max(pads[0], pads[1]) > kernel_size[0] // 2 or max(pads[2], pads[3]) > kernel_size[1] // 2:
        raise ValueError(f"{owner}: padding {padding!r} must be at most half the kernel size {kernel_size}")


def pooled_output_size(
    size: int, kernel: int, stride: int, before: int, after: int, dilation: int, ceil_mode: bool
) -> int:
    """A pooling window's output size along one axis, PyTorch's rule.

    Floor mode: ``floor((size + before + after - dilation*(kernel-1) - 1) / stride) + 1``,
    as for a convolution. Ceil mode rounds up instead, so that a last, partial
    window covers the rows the floor leaves out, except that the last window
    must start inside the input or the padding before it: a window starting in
    the padding after it is dropped.
    """
    span = size + before + after - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + before:
        out -= 1
    return out


def pool_geometry(
    input_hw: tuple[int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: Padding,
    owner: str = "",
    input_shape: tuple[int, ...] | None = None,
    dilation: tuple[int, int] = (1, 1),
    ceil_mode: bool = False,
) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """Resolve a pooling window's padding and output size (``pooled_output_size``), with ``check_pool_padding``.

    Returns ``((top, bottom, left, right), (H_out, W_out))``. Raises
    ``ValueError`` naming ``owner``, the input shape and the parameters when the
    output would be empty.
    """
    pads = normalize_padding(padding, kernel_size, stride, dilation, input_hw, owner)
    out_hw = tuple(
        pooled_output_size(input_hw[a], kernel_size[a], stride[a], pads[2 * a], pads[2 * a + 1], dilation[a], ceil_mode)
        for a in range(2)
    )
    extra = ", ceil_mode=True" if ceil_mode else ""
    _check_not_empty(out_hw, input_hw, kernel_size, stride, padding, dilation, owner, input_shape, extra)
    check_pool_padding(pads, kernel_size, padding, owner)
    return pads, out_hw


def pool_window_pads(
    input_hw: tuple[int, int],
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    pads: tuple[int, int, int, int],
    out_hw: tuple[int, int],
) -> tuple[int, int, int, int]:
    """``pads`` grown at the bottom and right until every window lies inside the padded input.

    Only ceil mode needs it: its last window may reach past the padding after
    the input, by ``(H_out - 1)*SH + DH*(KH - 1) + 1 - (H + PT + PB)`` rows. Those
    rows are filled like padding (-inf for max pooling, zeros for average
    pooling) but never counted in an average.
    """
    grown = list(pads)
    for a in range(2):
        reach = (out_hw[a] - 1) * stride[a] + dilation[a] * (kernel_size[a] - 1) + 1
        grown[2 * a + 1] += max(reach - (input_hw[a] + pads[2 * a] + pads[2 * a + 1]), 0)
    return (grown[0], grown[1], grown[2], grown[3])


def window_counts(
    size: int, kernel: int, stride: int, before: int, after: int, out: int, count_padding: bool
) -> np.ndarray:
    """How many positions of each window along one axis an average divides by, PyTorch's rule.

    Window i covers ``i*stride - before ... i*stride - before + kernel - 1`` in
    input coordinates. It counts the positions inside the padded input
    (``-before ... size + after - 1``) with ``count_padding``, those inside the
    input (``0 ... size - 1``) without; a ceil-mode window's part past the
    padding never counts. The divisor of window (i, j) is the product of its
    row count and its column count.

    Shape: returns (out,), int64
    """
    starts = np.arange(out, dtype=np.int64) * stride - before
    if count_padding:
        return np.minimum(starts + kernel, size + after) - starts
    return np.minimum(starts + kernel, size) - np.maximum(starts, 0)


def pad_spatial(x: np.ndarray, pads: tuple[int, int, int, int], value: float = 0.0) -> np.ndarray:
    """Pad the last two axes of ``x`` by ``(top, bottom, left, right)``.

    Returns ``x`` itself when no padding is needed (no copy).
    """
    top, bottom, left, right = pads
    if top == bottom == left == right == 0:
        return x
    n, c, h, w = x.shape
    x_padded = np.full((n, c, h + top + bottom, w + left + right), value, dtype=x.dtype)
    x_padded[:, :, top : top + h, left : left + w] = x
    return x_padded


def padded_shape(shape: tuple[int, int, int, int], pads: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The shape of a channels-last ``(N, H, W, C)`` array after ``pad_channels_last``."""
    n, height, width, channels = shape
    top, bottom, left, right = pads
    return n, height + top + bottom, width + left + right, channels


def pad_channels_last(
    x_nhwc: np.ndarray, pads: tuple[int, int, int, int], value: float = 0.0, out: np.ndarray | None = None
) -> np.ndarray:
    """Pad the two spatial axes of a channels-last ``(N, H, W, C)`` array by ``(top, bottom, left, right)``.

    Returns ``x_nhwc`` itself when no padding is needed (no copy). ``out``, if
    given, is a C-contiguous array of the padded shape to write into.
    """
    top, bottom, left, right = pads
    if top == bottom == left == right == 0:
        return x_nhwc
    height, width = x_nhwc.shape[1:3]
    shape = padded_shape(x_nhwc.shape, pads)
    if out is None:
        x_padded = np.full(shape, value, dtype=x_nhwc.dtype)
    else:
        x_padded = out.reshape(shape)
        x_padded.fill(value)
    x_padded[:, top : top + height, left : left + width, :] = x_nhwc
    return x_padded


def sliding_windows(
    x_padded_nhwc: np.ndarray,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
) -> np.ndarray:
    """A read-only strided view of every window of a channels-last array; no copy.

    ``windows[n, i, j, p, q, c] = x_padded[n, i*SH + p*DH, j*SW + q*DW, c]``

    Shape:
        x_padded_nhwc: (N, Hp, Wp, C)
        returns: (N, H_out, W_out, KH, KW, C)
    """
    s_n, s_h, s_w, s_c = x_padded_nhwc.strides
    n, _, _, channels = x_padded_nhwc.shape
    shape = (n, out_hw[0], out_hw[1], kernel_size[0], kernel_size[1], channels)
    strides = (s_n, s_h * stride[0], s_w * stride[1], s_h * dilation[0], s_w * dilation[1], s_c)
    if not x_padded_nhwc.flags.c_contiguous:
        return np.lib.stride_tricks.as_strided(x_padded_nhwc, shape, strides, writeable=False)
    # The same view built directly on the array's memory: a tenth of as_strided's
    # Python overhead, which counts because this runs once per chunk.
    windows = np.ndarray(shape, x_padded_nhwc.dtype, x_padded_nhwc, 0, strides)
    windows.flags.writeable = False
    return windows
