"""Normalisation ops: batch norm, group norm and layer norm.

All three standardise x over some set of axes and then apply a per-feature
affine map:

    x_hat = (x - mean) / sqrt(var + eps)        (var is the biased variance)
    out   = weight * x_hat + bias

They differ only in which axes the statistics are taken over:

    batch norm:  per channel, over the batch and every spatial position
    group norm:  per sample and group of C / G channels, over those channels and space
    layer norm:  per sample (or per slice of the leading axes), over the trailing axes

so their backward passes share one formula (``_standardize_backward``). A
constant slice has var = 0: eps keeps 1 / sqrt(var + eps) finite, x_hat = 0 and
nothing turns into NaN.

Batch norm, which runs after most convolutions and is memory-bound, has its
own module (``convnp/functional/batch_norm.py``: chunked passes, the fused
batch norm + ReLU); its pair is importable from here too.

``weight`` and ``bias`` may be None (no affine map; their gradients are None).
"""

from __future__ import annotations

import numpy as np

from convnp.checks import check_dout, check_eps, float_array
from convnp.functional.batch_norm import batch_norm_backward, batch_norm_forward

__all__ = [
    "batch_norm_forward",
    "batch_norm_backward",
    "group_norm_forward",
    "group_norm_backward",
    "layer_norm_forward",
    "layer_norm_backward",
]


# ------------------------------------------------------------------ helpers
def _check_x(x: np.ndarray, owner: str) -> np.ndarray:
    x = float_array(x, owner)
    if x.ndim < 2:
        raise ValueError(f"{owner}: x must have shape (N, C, ...), got {x.shape}")
    return x


def _check_param(
    value: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype, name: str, owner: str
) -> np.ndarray | None:
    if value is None:
        return None
    value = np.asarray(value)
    if value.shape != shape:
        raise ValueError(f"{owner}: {name} must have shape {shape} for x, got {value.shape}")
    if value.dtype != dtype:
        # A float64 weight would silently promote a float32 output.
        raise TypeError(f"{owner}: {name} dtype {value.dtype} differs from x dtype {dtype}")
    return value


def _affine(x_hat: np.ndarray, weight, bias, param_shape: tuple[int, ...]) -> np.ndarray:
    """out = weight * x_hat + bias, with weight and bias reshaped to broadcast."""
    out = x_hat if weight is None else x_hat * weight.reshape(param_shape)
    return out if bias is None else out + bias.reshape(param_shape)


def _affine_backward(dout, x_hat, weight, has_bias, sum_axes, param_shape):
    """Gradients of out = weight * x_hat + bias: (dx_hat, dweight, dbias)."""
    dbias = dout.sum(axis=sum_axes) if has_bias else None
    if weight is None:
        return dout, None, dbias
    dweight = (dout * x_hat).sum(axis=sum_axes)
    dx_hat = dout * weight.reshape(param_shape)
    return dx_hat, dweight, dbias


def _standardize_backward(
    dx_hat: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray, axes: int | tuple[int, ...]
) -> np.ndarray:
    """dx for x_hat = (x - mean) * inv_std, mean and biased var taken over ``axes``.

    With m values in each slice, d mean / dx = 1/m and d var / dx = 2 (x - mean) / m,
    so the three paths from x to x_hat (direct, through the mean, through the
    variance) sum to

        dx = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))

    where both means run over ``axes`` (the same slice the statistics used).
    """
    mean_dx_hat = dx_hat.mean(axis=axes, keepdims=True)
    mean_dx_hat_x_hat = (dx_hat * x_hat).mean(axis=axes, keepdims=True)
    return inv_std * (dx_hat - mean_dx_hat - x_hat * mean_dx_hat_x_hat)


# --------------------------------------------------------------- group norm
def group_norm_forward(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    num_groups: int,
    eps: float = 1e-5,
) -> tuple[np.ndarray, dict]:
    """Group normalisation: per sample, standardise each group of C / G channels.

    The C channels split into G consecutive groups; the statistics of sample n
    and group g run over its C/G channels and every spatial position:

        x_hat = (x - mean[n, g]) / sqrt(var[n, g] + eps)
        out[:, c] = weight[c] * x_hat[:, c] + bias[c]

    G = 1 is layer norm with a per-channel affine map; G = C is instance norm.
    The batch size does not enter: training and inference compute the same thing.

    Shape:
        x: (N, C, ...), C divisible by G
        weight, bias: (C,)
        out: same as x
    """
    owner = "group_norm_forward"
    x = _check_x(x, owner)
    batch, channels = x.shape[:2]
    if not isinstance(num_groups, (int, np.integer)) or isinstance(num_groups, bool):
        raise TypeError(f"{owner}: num_groups must be an int, got {num_groups!r}")
    if num_groups < 1 or channels % num_groups != 0:
        raise ValueError(
            f"{owner}: num_groups={num_groups} must be >= 1 and divide the {channels} channels "
            f"of x with shape {x.shape}"
        )
    weight = _check_param(weight, (channels,), x.dtype, "weight", owner)
    bias = _check_param(bias, (channels,), x.dtype, "bias", owner)
    eps = check_eps(eps, owner)

    x_groups = x.reshape(batch, num_groups, -1)  # (N, G, C/G * H * W)
    mean = x_groups.mean(axis=2, keepdims=True)  # (N, G, 1)
    var = x_groups.var(axis=2, keepdims=True)  # (N, G, 1), biased
    inv_std = 1 / np.sqrt(var + eps)  # (N, G, 1)
    x_hat = ((x_groups - mean) * inv_std).reshape(x.shape)  # back to (N, C, ...)
    param_shape = (1, channels) + (1,) * (x.ndim - 2)
    out = _affine(x_hat, weight, bias, param_shape)
    cache = {
        "x_hat": x_hat,
        "inv_std": inv_std,
        "weight": weight,
        "has_bias": bias is not None,
        "num_groups": num_groups,
    }
    return out, cache


def group_norm_backward(dout: np.ndarray, cache: dict) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of group norm.

    dbias   = sum over (N, H, W) of dout
    dweight = sum over (N, H, W) of dout * x_hat
    dx      = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)),
              dx_hat = dout * weight, means over each (sample, group) slice

    Shape:
        dout, dx: same as x; dweight, dbias: (C,)
    """
    x_hat = cache["x_hat"]
    dout = check_dout(dout, x_hat.shape, "group_norm_backward")
    batch, channels = x_hat.shape[:2]
    sum_axes = (0, *range(2, x_hat.ndim))
    param_shape = (1, channels) + (1,) * (x_hat.ndim - 2)
    dx_hat, dweight, dbias = _affine_backward(dout, x_hat, cache["weight"], cache["has_bias"], sum_axes, param_shape)
    group_shape = (batch, cache["num_groups"], -1)  # (N, G, C/G * H * W)
    dx = _standardize_backward(dx_hat.reshape(group_shape), x_hat.reshape(group_shape), cache["inv_std"], axes=2)
    return dx.reshape(x_hat.shape), dweight, dbias


# --------------------------------------------------------------- layer norm
def layer_norm_forward(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float = 1e-5, begin_axis: int = 1
) -> tuple[np.ndarray, dict]:
    """Layer normalisation: standardise x over its axes ``begin_axis..``, one slice per index of the axes before.

    With D = prod(x.shape[begin_axis:]) values in each slice s (by default a sample):

        x_hat[s] = (x[s] - mean[s]) / sqrt(var[s] + eps)
        out[s]   = weight * x_hat[s] + bias        (elementwise, weight shaped like a slice)

    This is ``torch.nn.functional.layer_norm(x, x.shape[begin_axis:], ...)``
    (PyTorch's ``normalized_shape``) and ONNX's ``LayerNormalization(axis=begin_axis)``;
    ``begin_axis`` may be negative (counted from the end) or 0 (one slice: all of x).

    Shape:
        x: (N, ...)
        weight, bias: x.shape[begin_axis:]
        out: same as x
    """
    owner = "layer_norm_forward"
    x = _check_x(x, owner)
    if isinstance(begin_axis, bool) or not isinstance(begin_axis, (int, np.integer)):
        raise TypeError(f"{owner}: begin_axis must be an int, got {begin_axis!r}")
    if not -x.ndim <= begin_axis < x.ndim:
        raise ValueError(f"{owner}: begin_axis {begin_axis} is out of range for x of shape {x.shape}")
    begin_axis = int(begin_axis) % x.ndim
    slice_shape = x.shape[begin_axis:]
    weight = _check_param(weight, slice_shape, x.dtype, "weight", owner)
    bias = _check_param(bias, slice_shape, x.dtype, "bias", owner)
    eps = check_eps(eps, owner)

    x_rows = x.reshape(int(np.prod(x.shape[:begin_axis], dtype=np.int64)), -1)  # (slices, D)
    mean = x_rows.mean(axis=1, keepdims=True)  # (slices, 1)
    var = x_rows.var(axis=1, keepdims=True)  # (slices, 1), biased
    inv_std = 1 / np.sqrt(var + eps)  # (slices, 1)
    x_hat = ((x_rows - mean) * inv_std).reshape(x.shape)  # back to x's shape
    out = _affine(x_hat, weight, bias, (1,) * begin_axis + slice_shape)
    cache = {
        "x_hat": x_hat,
        "inv_std": inv_std,
        "weight": weight,
        "has_bias": bias is not None,
        "begin_axis": begin_axis,
    }
    return out, cache


def layer_norm_backward(dout: np.ndarray, cache: dict) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of layer norm.

    dbias   = sum over the axes before begin_axis of dout
    dweight = sum over the axes before begin_axis of dout * x_hat
    dx      = inv_std * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)),
              dx_hat = dout * weight, means over each slice's D values

    Shape:
        dout, dx: same as x; dweight, dbias: x.shape[begin_axis:]
    """
    x_hat, begin_axis = cache["x_hat"], cache["begin_axis"]
    dout = check_dout(dout, x_hat.shape, "layer_norm_backward")
    dx_hat, dweight, dbias = _affine_backward(
        dout,
        x_hat,
        cache["weight"],
        cache["has_bias"],
        tuple(range(begin_axis)),
        (1,) * begin_axis + x_hat.shape[begin_axis:],
    )
    rows = (cache["inv_std"].shape[0], -1)  # (slices, D)
    dx = _standardize_backward(dx_hat.reshape(rows), x_hat.reshape(rows), cache["inv_std"], axes=1)
    return dx.reshape(x_hat.shape), dweight, dbias
