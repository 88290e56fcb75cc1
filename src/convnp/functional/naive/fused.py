"""The fused ops as the ops they fuse, one after the other: oracles for the one-pass versions.

``batch_norm_relu`` is this package's channel-by-channel batch norm followed by
``relu_forward``; ``add_relu`` is the sum of the inputs (first to last)
followed by ``relu_forward``; ``conv2d_relu_avg_pool2d`` is the loop-based
convolution, ``relu_forward`` and the loop-based 2x2 average pooling. Backward
runs the same ops in reverse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from convnp.functional.activations import relu_backward, relu_forward
from convnp.functional.naive.conv import conv2d_backward, conv2d_forward
from convnp.functional.naive.normalization import batch_norm_backward, batch_norm_forward
from convnp.functional.naive.pooling import avg_pool2d_backward, avg_pool2d_forward

__all__ = [
    "batch_norm_relu_forward",
    "batch_norm_relu_backward",
    "add_relu_forward",
    "add_relu_backward",
    "conv2d_relu_avg_pool2d_forward",
    "conv2d_relu_avg_pool2d_backward",
]


def batch_norm_relu_forward(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
    reduce: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, tuple]:
    """out = relu(batch_norm(x)): the two ops in turn.

    Shape:
        x: (N, C, ...); weight, bias, running_mean, running_var: (C,); out: same as x
    """
    normalized, batch_norm_cache = batch_norm_forward(
        x, weight, bias, running_mean, running_var, training, momentum, eps, reduce
    )
    out, relu_cache = relu_forward(normalized)
    return out, (batch_norm_cache, relu_cache)


def batch_norm_relu_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """ReLU's backward pass, then batch norm's: (dx, dweight, dbias)."""
    batch_norm_cache, relu_cache = cache
    return batch_norm_backward(relu_backward(dout, relu_cache), batch_norm_cache)


def add_relu_forward(inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """out = relu(x_1 + x_2 + ...), the sum taken first to last.

    Shape:
        inputs: k >= 2 arrays of one shape; out: that shape
    """
    total = inputs[0] + inputs[1]
    for x in inputs[2:]:
        total = total + x
    return relu_forward(total)


def add_relu_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    """The gradient of every input: ReLU's backward pass (the sum passes it on unchanged)."""
    return relu_backward(dout, cache)


def conv2d_relu_avg_pool2d_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride=1, padding=0, dilation=1, groups=1
) -> tuple[np.ndarray, tuple]:
    """out = avg_pool2d(relu(conv2d(x)), 2): the three ops in turn.

    Shape: x (N, C, H, W) -> out (N, F, H_conv // 2, W_conv // 2)
    """
    z, conv_cache = conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
    activated, relu_cache = relu_forward(z)
    out, pool_cache = avg_pool2d_forward(activated, 2)
    return out, (conv_cache, relu_cache, pool_cache)


def conv2d_relu_avg_pool2d_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The pooling's backward pass, ReLU's, then the convolution's: (dx, dweight, dbias)."""
    conv_cache, relu_cache, pool_cache = cache
    return conv2d_backward(relu_backward(avg_pool2d_backward(dout, pool_cache), relu_cache), conv_cache)
