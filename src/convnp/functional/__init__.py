"""Stateless ops: each a ``X_forward(...) -> (out, cache)`` / ``X_backward(dout, cache)`` pair.

Also available as ``convnp.F``. The loop-based references are in
``convnp.functional.naive``.
"""

from convnp.functional import naive
from convnp.functional.activations import (
    add_relu_backward,
    add_relu_forward,
    elu_backward,
    elu_forward,
    gaussian_backward,
    gaussian_forward,
    leaky_relu_backward,
    leaky_relu_forward,
    log_softmax,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax_backward,
    softmax_forward,
    tanh_backward,
    tanh_forward,
)
from convnp.functional.adaptive_pool import adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward
from convnp.functional.batch_norm import batch_norm_relu_backward, batch_norm_relu_forward
from convnp.functional.conv import conv2d_backward, conv2d_forward
from convnp.functional.conv_transpose import conv_transpose2d_backward, conv_transpose2d_forward
from convnp.functional.dropout import dropout_backward, dropout_forward
from convnp.functional.linear import linear_backward, linear_forward
from convnp.functional.losses import mse_loss, softmax_cross_entropy
from convnp.functional.normalization import (
    batch_norm_backward,
    batch_norm_forward,
    group_norm_backward,
    group_norm_forward,
    layer_norm_backward,
    layer_norm_forward,
)
from convnp.functional.pooling import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from convnp.functional.upsample import upsample2d_backward, upsample2d_forward
from convnp.functional.winograd import winograd_conv2d_backward, winograd_conv2d_forward

__all__ = [
    "naive",
    "conv2d_forward", "conv2d_backward",
    "winograd_conv2d_forward", "winograd_conv2d_backward",
    "conv_transpose2d_forward", "conv_transpose2d_backward",
    "max_pool2d_forward", "max_pool2d_backward",
    "avg_pool2d_forward", "avg_pool2d_backward",
    "global_avg_pool2d_forward", "global_avg_pool2d_backward",
    "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
    "upsample2d_forward", "upsample2d_backward",
    "linear_forward", "linear_backward",
    "relu_forward", "relu_backward",
    "leaky_relu_forward", "leaky_relu_backward",
    "elu_forward", "elu_backward",
    "sigmoid_forward", "sigmoid_backward",
    "tanh_forward", "tanh_backward",
    "gaussian_forward", "gaussian_backward",
    "softmax_forward", "softmax_backward", "log_softmax",
    "batch_norm_forward", "batch_norm_backward",
    "batch_norm_relu_forward", "batch_norm_relu_backward", "add_relu_forward", "add_relu_backward",
    "group_norm_forward", "group_norm_backward",
    "layer_norm_forward", "layer_norm_backward",
    "dropout_forward", "dropout_backward",
    "softmax_cross_entropy", "mse_loss",
]  # fmt: skip
