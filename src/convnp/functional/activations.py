"""Activations: elementwise nonlinearities and softmax, as forward/backward pairs.

Each op is ``X_forward(x, ...) -> (out, cache)`` and ``X_backward(dout, cache) -> dx``.
The elementwise ops take any shape; ``softmax`` normalises along an axis, by
default axis 1 (the class axis of ``(N, C)`` logits, the channel axis of
``(N, C, H, W)`` maps).

Outputs keep the input's dtype. Scalar arguments such as ``alpha`` are cast to
that dtype first: under NumPy's promotion rules a NumPy float64 scalar (unlike a
Python float) would turn a float32 result into float64.

Ops whose formula has a kink (relu, leaky_relu, elu at x = 0) use the one-sided
derivative PyTorch uses: the ``x > 0`` branch applies only for strictly
positive x.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from convnp.backend import images_per_chunk, run_batched
from convnp.checks import check_dout, float_array

__all__ = [
    "relu_forward",
    "relu_backward",
    "add_relu_forward",
    "add_relu_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "elu_forward",
    "elu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "gaussian_forward",
    "gaussian_backward",
    "softmax_forward",
    "softmax_backward",
    "log_softmax",
]


def _as_scalar(value: float, dtype: np.dtype, name: str, owner: str) -> np.floating:
    try:
        return dtype.type(float(value))
    except (TypeError, ValueError) as error:
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}") from error


# ------------------------------------------------------------------- ReLU
def relu_forward(x: np.ndarray, in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rectified linear unit: out = max(x, 0).

    ``in_place=True`` writes out over x (for an x that nothing else reads,
    such as the fresh output of the op before) and keeps out as the cache:
    out > 0 exactly where x > 0, so the backward pass is the same.

    Shape:
        x: any; out: same as x
    """
    x = float_array(x, "relu_forward")
    if x.ndim == 0:
        return np.maximum(x, x.dtype.type(0)), x
    out = x if in_place else np.empty_like(x)  # keeps x's memory layout (channels-last stays channels-last)
    zero = x.dtype.type(0)
    run_batched(lambda first, last: np.maximum(x[first:last], zero, out=out[first:last]), len(x), x.size)
    return out, x


def relu_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dx = dout where x > 0, else 0."""
    x = cache
    dout = check_dout(dout, x.shape, "relu_backward")
    if dout.ndim == 0:
        return dout * (x > 0)
    dx = np.empty_like(dout)

    def mask(first: int, last: int) -> None:
        # Multiplying by the boolean mask is one fast pass; np.where is several times slower here.
        np.multiply(dout[first:last], x[first:last] > 0, out=dx[first:last])

    run_batched(mask, len(dout), dout.size)
    return dx


# ---------------------------------------------- Speed only: a sum, then ReLU
def add_relu_forward(inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The sum of two or more arrays, then ReLU, in one pass: out = max(x_1 + x_2 + ..., 0).

    The end of a residual block. Each chunk of a few images is added and
    clipped at 0 while it is in cache, so the sum is never written out on its
    own; the additions run in the inputs' order, so the values are exactly
    ``relu_forward(x_1 + x_2 + ...)``'s.

    Shape:
        inputs: k >= 2 arrays of one shape (N, ...); out: that shape
    """
    owner = "add_relu_forward"
    if isinstance(inputs, np.ndarray) or len(inputs) < 2:
        raise TypeError(f"{owner}: expected a list of at least two arrays, got {type(inputs).__name__}")
    arrays = [float_array(x, owner) for x in inputs]
    first = arrays[0]
    if first.ndim < 1 or any(x.shape != first.shape or x.dtype != first.dtype for x in arrays):
        raise ValueError(
            f"{owner}: the inputs must be batches of one shape and dtype, got "
            f"{[(x.shape, str(x.dtype)) for x in arrays]}"
        )
    out = np.empty_like(first)  # keeps the memory layout (channels-last stays channels-last)
    zero = first.dtype.type(0)

    def add_chunk(begin: int, end: int) -> None:
        total = out[begin:end]
        np.add(arrays[0][begin:end], arrays[1][begin:end], out=total)
        for x in arrays[2:]:
            total += x[begin:end]
        np.maximum(total, zero, out=total)  # in place, while the chunk is in cache

    values_per_image = max(1, math.prod(first.shape[1:]))
    chunk = images_per_chunk((len(arrays) + 1) * values_per_image, first.dtype)  # the inputs' chunks and out's
    run_batched(add_chunk, len(first), first.size * len(arrays), chunk)
    return out, out


def add_relu_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """The gradient of every input of ``add_relu_forward``: dx_i = dout where out > 0, else 0.

    d out / d x_i = 1 where the sum is positive (out > 0 exactly there), so
    each input gets the same array; a caller that adds gradients of a value
    read twice adds it as usual.
    """
    out = cache
    return relu_backward(check_dout(dout, out.shape, "add_relu_backward"), out)


# ------------------------------------------------------------- Leaky ReLU
def leaky_relu_forward(x: np.ndarray, alpha: float = 0.01) -> tuple[np.ndarray, tuple]:
    """Leaky ReLU: out = x if x > 0 else alpha * x.

    Shape:
        x: any; out: same as x
    """
    x = float_array(x, "leaky_relu_forward")
    alpha = _as_scalar(alpha, x.dtype, "alpha", "leaky_relu_forward")
    out = np.where(x > 0, x, alpha * x)
    return out, (x, alpha)


def leaky_relu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dx = dout if x > 0 else alpha * dout."""
    x, alpha = cache
    dout = check_dout(dout, x.shape, "leaky_relu_backward")
    return np.where(x > 0, dout, alpha * dout)


# -------------------------------------------------------------------- ELU
def elu_forward(x: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, tuple]:
    """Exponential linear unit: out = x if x > 0 else alpha * (exp(x) - 1).

    Shape:
        x: any; out: same as x
    """
    x = float_array(x, "elu_forward")
    alpha = _as_scalar(alpha, x.dtype, "alpha", "elu_forward")
    # exp only of the non-positive part: exp of a large positive x would overflow
    # in the branch np.where throws away. expm1 keeps exp(x) - 1 accurate near 0.
    x_neg = np.minimum(x, 0)
    with np.errstate(under="ignore"):
        out = np.where(x > 0, x, alpha * np.expm1(x_neg))
    return out, (x, alpha)


def elu_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dx = dout if x > 0 else dout * alpha * exp(x).

    alpha * exp(x) is recomputed from x rather than taken as out + alpha, which
    loses all relative precision once exp(x) is far below alpha.
    """
    x, alpha = cache
    dout = check_dout(dout, x.shape, "elu_backward")
    with np.errstate(under="ignore"):
        return np.where(x > 0, dout, dout * (alpha * np.exp(np.minimum(x, 0))))


# ---------------------------------------------------------------- Sigmoid
def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logistic sigmoid: out = 1 / (1 + exp(-x)), computed without overflow.

    With e = exp(-|x|), which lies in (0, 1] and cannot overflow:
        out = 1 / (1 + e)   for x >= 0
        out = e / (1 + e)   for x < 0   (the same value, multiplied through by exp(x))

    Shape:
        x: any; out: same as x
    """
    x = float_array(x, "sigmoid_forward")
    with np.errstate(under="ignore"):
        e = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return out, out


def sigmoid_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dx = dout * out * (1 - out), since d/dx sigmoid(x) = sigmoid(x) * (1 - sigmoid(x))."""
    out = cache
    dout = check_dout(dout, out.shape, "sigmoid_backward")
    return dout * (1 - out) * out


# ------------------------------------------------------------------- Tanh
def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hyperbolic tangent: out = tanh(x).

    Shape:
        x: any; out: same as x
    """
    x = float_array(x, "tanh_forward")
    out = np.tanh(x)
    return out, out


def tanh_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """dx = dout * (1 - out**2), since d/dx tanh(x) = 1 - tanh(x)**2."""
    out = cache
    dout = check_dout(dout, out.shape, "tanh_backward")
    return dout * (1 - out * out)


# --------------------------------------------------------------- Gaussian
def gaussian_forward(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Gaussian bump: out = exp(-x**2).

    Shape:
        x: any; out: same as x
    """
    x = float_array(x, "gaussian_forward")
    # For huge |x| the square overflows to inf and exp(-inf) = 0, the right limit.
    with np.errstate(over="ignore", under="ignore"):
        out = np.exp(-np.square(x))
    return out, (x, out)


def gaussian_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """dx = dout * (-2 * x * out), since d/dx exp(-x**2) = -2x exp(-x**2)."""
    x, out = cache
    dout = check_dout(dout, x.shape, "gaussian_backward")
    return dout * (-2 * x * out)


# ---------------------------------------------------------------- Softmax
def _normalize_axis(axis: int, ndim: int, shape: tuple[int, ...], owner: str) -> int:
    """``axis`` (negative counts from the end) as an index into ``shape``; ``ValueError`` when out of range."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{owner}: axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{owner}: axis {axis} is out of range for x of shape {shape}")
    return int(axis) % ndim


def softmax_forward(x: np.ndarray, axis: int = 1) -> tuple[np.ndarray, tuple[np.ndarray, int]]:
    """Softmax along ``axis``: out[..., i, ...] = exp(x[..., i, ...]) / sum_j exp(x[..., j, ...]).

    The default axis 1 is the class axis of (N, C) logits and the channel axis
    of (N, C, H, W) maps; any other axis (negative counts from the end, as
    PyTorch's ``dim``) normalises along that one instead.

    Each slice's own maximum is subtracted first (the result does not change):
    the largest exponent becomes exp(0) = 1, so nothing overflows and each
    denominator is at least 1. A global maximum would not do: a slice far
    below it would underflow to 0 / 0.

    Shape:
        x: any with axis in range, e.g. (N, C) or (N, C, ...); out: same as x, summing to 1 along axis
    """
    x = float_array(x, "softmax_forward")
    axis = _normalize_axis(axis, x.ndim, x.shape, "softmax_forward")
    shifted = x - x.max(axis=axis, keepdims=True)  # (N, C, ...) - (N, 1, ...) for axis 1
    with np.errstate(under="ignore"):
        exp = np.exp(shifted)
    out = exp / exp.sum(axis=axis, keepdims=True)
    return out, (out, axis)


def softmax_backward(dout: np.ndarray, cache: tuple[np.ndarray, int]) -> np.ndarray:
    """dx[i] = out[i] * (dout[i] - sum_j dout[j] * out[j]) along the softmax's axis.

    From the Jacobian d out[j] / d x[i] = out[j] * (delta_ij - out[i]):
    dx[i] = sum_j dout[j] * out[j] * (delta_ij - out[i]).
    """
    out, axis = cache
    dout = check_dout(dout, out.shape, "softmax_backward")
    weighted_sum = (dout * out).sum(axis=axis, keepdims=True)  # (N, 1, ...) for axis 1
    return out * (dout - weighted_sum)


def log_softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """log(softmax(x)) along ``axis``, without forming the softmax.

    log_softmax(x)[i] = (x[i] - m) - log(sum_j exp(x[j] - m)), m = max_j x[j].
    The sum is at least 1 (the term of the maximum), so the log never sees 0 and
    the result is finite for any finite x, however far apart the entries are.

    Shape:
        x: any with ndim >= 1; returns: same as x
    """
    x = float_array(x, "log_softmax")
    shifted = x - x.max(axis=axis, keepdims=True)
    with np.errstate(under="ignore"):
        log_sum = np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted - log_sum
