"""Loop-based reference implementations: the formulas, index by index.

Every function here has the same signature and returns the same things as its
fast counterpart in ``convnp.functional`` (modules ``conv``, ``conv_transpose``,
``pooling``, ``adaptive_pool``, ``upsample``, ``batch_norm``, ``winograd``), but computes them
with explicit for-loops over every index (n, f, i, j, c, p, q), or, for Winograd's algorithm,
over every tile. They are slow on purpose:
each line is one term of the textbook formula, so they serve as test oracles
for the vectorised code and as teaching material. Keep the inputs small (a few
channels, images of ~10x10).

Only the window geometry is shared with the fast path: padding normalisation
and the output size come from ``convnp.functional.geometry``, which is the one
definition of them in the library, and Winograd's transform matrices from
``convnp.functional.winograd``.

One module per family of ops: ``conv`` (convolution and transposed
convolution), ``pooling`` (max, average, global and adaptive average),
``upsample``, ``normalization`` (batch norm, channel by channel), ``winograd``
(the F(2x2, 3x3) convolution), and ``fused``: the fused ops (batch norm + ReLU,
sum + ReLU) as the ops they fuse, run one after the other. Notation used in every docstring:
    x_padded   the input with PT/PB rows above/below and PL/PR columns left/right
               of padding (zeros for convolution and average pooling, -inf for
               max pooling)
    SH, SW     stride; DH, DW dilation; KH, KW kernel size
    G          groups; C/G input channels and F/G filters per group
    g(f)       = f // (F/G), the group of filter f
"""

from convnp.functional.naive.conv import (
    NaiveConv2dCache,
    NaiveConvTranspose2dCache,
    conv2d_backward,
    conv2d_forward,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
)
from convnp.functional.naive.fused import (
    add_relu_backward,
    add_relu_forward,
    batch_norm_relu_backward,
    batch_norm_relu_forward,
)
from convnp.functional.naive.normalization import NaiveBatchNormCache, batch_norm_backward, batch_norm_forward
from convnp.functional.naive.pooling import (
    NaivePoolCache,
    adaptive_avg_pool2d_backward,
    adaptive_avg_pool2d_forward,
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from convnp.functional.naive.upsample import NaiveUpsampleCache, upsample2d_backward, upsample2d_forward
from convnp.functional.naive.winograd import NaiveWinogradCache, winograd_conv2d_backward, winograd_conv2d_forward

__all__ = [
    "NaiveConv2dCache",
    "NaivePoolCache",
    "conv2d_forward",
    "conv2d_backward",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "adaptive_avg_pool2d_backward",
    "NaiveConvTranspose2dCache",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
    "NaiveUpsampleCache",
    "upsample2d_forward",
    "upsample2d_backward",
    "NaiveBatchNormCache",
    "batch_norm_forward",
    "batch_norm_backward",
    "batch_norm_relu_forward",
    "batch_norm_relu_backward",
    "add_relu_forward",
    "add_relu_backward",
    "NaiveWinogradCache",
    "winograd_conv2d_forward",
    "winograd_conv2d_backward",
]
