"""The steps a plan is made of: one layer (``LayerStep``) or a few run as one op, each with a forward and a backward.

Which nodes become which step, and why every fusion gives the values of the
layers run one by one, is ``convnp/nn/plan.py``'s text. Here is only how each
step runs.

A step holds no state of its own: what its backward pass needs stays in its
layers' ``cache`` (a fused step keeps the fused op's cache in its first layer,
and a ReLU that runs apart from the op before it keeps its own), so a plan can
be built again at any time and runs the same. ``shard_copy`` gives a twin over
the layers' ``shard_copy``s, so that shards of one batch run the same plan at
the same time (``convnp/nn/shards.py``). ``step.layers`` lists a step's layers
in the order they compute: (pool, relu) for ``PoolThenReLU``, (conv, pool) or
(conv, pool, relu) for ``ConvPoolStep``, (conv, relu, pool) for
``ConvReLUAvgPoolStep``, (conv, batch_norm) or
(conv, batch_norm, relu) for ``ConvBatchNormStep``, (batch_norm, relu) and
(add, relu) for ``BatchNormReLUStep`` and ``AddReLUStep``.
"""

from __future__ import annotations

import math

import numpy as np

from convnp.functional.activations import add_relu_backward, add_relu_forward, relu_backward, relu_forward
from convnp.functional.batch_norm import batch_norm_relu_backward, batch_norm_relu_forward
from convnp.functional.conv_pool import (
    conv2d_max_pool2d_backward,
    conv2d_max_pool2d_forward,
    conv2d_relu_avg_pool2d_backward,
    conv2d_relu_avg_pool2d_forward,
)
from convnp.nn.activations import ReLU
from convnp.nn.conv import CONV_ALGORITHMS, Conv2D
from convnp.nn.layer import Layer
from convnp.nn.merge import Add
from convnp.nn.normalization import BatchNorm1D, BatchNorm2D
from convnp.nn.pooling import AvgPool2D, MaxPool2D

__all__ = [
    "Step",
    "LayerStep",
    "PoolThenReLU",
    "ConvPoolStep",
    "ConvReLUAvgPoolStep",
    "ConvBatchNormStep",
    "BatchNormReLUStep",
    "AddReLUStep",
]


class Step:
    """One step of a plan: ``forward(x, training)``, then ``backward(grad, input_grad)`` in reverse.

    ``inputs`` are the numbers of the values it reads (one, or several for a
    merge layer), ``output`` the number of the value it writes.
    """

    layers: tuple[Layer, ...] = ()
    inputs: tuple[int, ...] = (0,)
    output: int = 1

    def forward(self, x, training: bool):
        raise NotImplementedError

    def backward(self, grad: np.ndarray, input_grad: bool = True):
        """Back-propagate ``grad``, filling the parameter gradients; dx (a list for several inputs), or None."""
        raise NotImplementedError

    def wired(self, inputs: tuple[int, ...], output: int) -> Step:
        self.inputs, self.output = tuple(inputs), output
        return self

    def shard_copy(self) -> Step:
        """A twin that runs another shard of the batch: same weights, its own caches and gradients."""
        return type(self)(*(layer.shard_copy() for layer in self.layers)).wired(self.inputs, self.output)

    def drop_caches(self) -> None:
        """Forget what the last forward pass kept in the step's layers."""
        for layer in self.layers:
            for part in layer.self_and_sublayers():
                part.cache = None

    def output_size(self) -> int:
        """Values per sample that the step's layers compute (the work a pass does grows with it)."""
        return sum(math.prod(layer.output_shape) for layer in self.layers)

    def __repr__(self) -> str:
        return " -> ".join(layer.short_repr() for layer in self.layers)


class LayerStep(Step):
    """A layer run on its own."""

    def __init__(self, layer: Layer) -> None:
        self.layer = layer
        self.layers = (layer,)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        return self.layer.forward(x, training=training)

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        if input_grad:
            return self.layer.backward(grad)
        self.layer.backward_params(grad)  # the first layer: nothing needs its dx
        return None


class _ReLUAfter(Step):
    """A step whose last part is a ReLU applied to its pooled output (any shape: ReLU is elementwise)."""

    relu: ReLU | None = None

    def relu_forward(self, out: np.ndarray) -> np.ndarray:
        if self.relu is None:
            return out
        out, self.relu.cache = relu_forward(out)
        return out

    def relu_backward(self, grad: np.ndarray) -> np.ndarray:
        if self.relu is None:
            return grad
        return relu_backward(self.relu.check_grad(grad), self.relu.cache)


class PoolThenReLU(_ReLUAfter):
    """``ReLU`` then ``MaxPool2D``, run as pool then ReLU (equal values and gradients; see plan.py)."""

    def __init__(self, pool: MaxPool2D, relu: ReLU) -> None:
        self.pool, self.relu = pool, relu
        self.layers = (pool, relu)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        return self.relu_forward(self.pool.forward(x, training=training))

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        grad = self.relu_backward(grad)
        if input_grad:
            return self.pool.backward(grad)
        self.pool.backward_params(grad)
        return None


class ConvPoolStep(_ReLUAfter):
    """``Conv2D`` then 2x2 / stride 2 ``MaxPool2D`` (and a ReLU before or after it) in one chunked pass.

    Shape: (N, C, H, W) -> (N, F, H_conv // 2, W_conv // 2)
    """

    def __init__(self, conv: Conv2D, pool: MaxPool2D, relu: ReLU | None = None) -> None:
        self.conv, self.pool, self.relu = conv, pool, relu
        self.layers = (conv, pool) if relu is None else (conv, pool, relu)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        conv = self.conv
        x = conv.check_input(x)
        bias = None if conv.bias is None else conv.bias.data
        out, conv.cache = conv2d_max_pool2d_forward(  # the fused op's cache, kept by the convolution
            x, conv.weight.data, bias, conv.stride, conv.padding, conv.dilation, conv.groups
        )
        return self.relu_forward(out)

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        grad = self.conv.check_grad(self.relu_backward(grad))
        dx, dweight, dbias = conv2d_max_pool2d_backward(grad, self.conv.cache, input_grad)
        self.conv.weight.grad = dweight
        if self.conv.bias is not None:
            self.conv.bias.grad = dbias
        return dx


class ConvReLUAvgPoolStep(Step):
    """``Conv2D``, ``ReLU``, then 2x2 / stride 2 ``AvgPool2D`` (LeNet's block) in one chunked pass.

    The ReLU's mask stays in the fused op's cache (kept by the convolution);
    the ReLU and the pooling layers keep nothing.

    Shape: (N, C, H, W) -> (N, F, H_conv // 2, W_conv // 2)
    """

    def __init__(self, conv: Conv2D, relu: ReLU, pool: AvgPool2D) -> None:
        self.conv, self.relu, self.pool = conv, relu, pool
        self.layers = (conv, relu, pool)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        conv = self.conv
        bias = None if conv.bias is None else conv.bias.data
        out, conv.cache = conv2d_relu_avg_pool2d_forward(
            conv.check_input(x), conv.weight.data, bias, conv.stride, conv.padding, conv.dilation, conv.groups
        )
        return out

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        dx, dweight, dbias = conv2d_relu_avg_pool2d_backward(self.conv.check_grad(grad), self.conv.cache, input_grad)
        self.conv.weight.grad = dweight
        if self.conv.bias is not None:
            self.conv.bias.grad = dbias
        return dx


class ConvBatchNormStep(Step):
    """Inference only: a ``Conv2D`` and the ``BatchNorm2D`` after it (and a ReLU after that), as one convolution.

    In inference batch norm is an affine map per channel with constants, so it
    folds into the convolution before it:

        scale[f] = bn.weight[f] / sqrt(running_var[f] + eps)
        weight'[f] = conv.weight[f] * scale[f]
        bias'[f] = (conv.bias[f] - running_mean[f]) * scale[f] + bn.bias[f]

    Equal to the two layers in inference mode up to rounding; one pass over the
    feature map instead of two. A ReLU after the batch norm clips the
    convolution's fresh output in place (no array of its own). Plans for
    training never contain it.
    """

    def __init__(self, conv: Conv2D, batch_norm: BatchNorm2D, relu: ReLU | None = None) -> None:
        self.conv, self.batch_norm, self.relu = conv, batch_norm, relu
        self.layers = (conv, batch_norm) if relu is None else (conv, batch_norm, relu)

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """The folded (weight, bias) in the convolution's dtype."""
        conv, bn = self.conv, self.batch_norm
        dtype = conv.dtype
        scale = 1 / np.sqrt(bn.running_var.astype(dtype) + dtype.type(bn.eps))  # (F,)
        if bn.weight is not None:
            scale = scale * bn.weight.data
        shift = -bn.running_mean.astype(dtype) if conv.bias is None else conv.bias.data - bn.running_mean
        bias = shift * scale if bn.bias is None else shift * scale + bn.bias.data
        weight = conv.weight.data * scale[:, None, None, None]
        return weight.astype(dtype, copy=False), bias.astype(dtype, copy=False)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        if training:
            raise RuntimeError(f"{self!r}: the folded step is for inference only")
        conv = self.conv
        weight, bias = self.folded()
        convolution_forward, _ = CONV_ALGORITHMS[conv.algorithm]
        out, _ = convolution_forward(
            conv.check_input(x), weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups
        )
        if self.relu is not None:
            out, _ = relu_forward(out, in_place=True)  # out is the convolution's own new array
        return out

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        raise RuntimeError(f"{self!r}: the folded step is for inference only; it has no backward pass")


class BatchNormReLUStep(Step):
    """``BatchNorm2D`` (or ``BatchNorm1D``) then ``ReLU``, as one op: the ReLU clips each normalised chunk in place.

    Training and inference, sharded or not: the batch norm's arguments, its
    statistics and their exchanges are the layer's own (its ``op_arguments``);
    ``convnp/functional/batch_norm.py`` has the fused op. The backward pass
    masks the gradient with out > 0 and runs batch norm's backward on it, in
    the same passes.

    Shape: (N, C, ...) -> (N, C, ...)
    """

    def __init__(self, batch_norm: BatchNorm1D | BatchNorm2D, relu: ReLU) -> None:
        self.batch_norm, self.relu = batch_norm, relu
        self.layers = (batch_norm, relu)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        bn = self.batch_norm
        out, bn.cache = batch_norm_relu_forward(bn.check_input(x), **bn.op_arguments(training))
        return out

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        bn = self.batch_norm
        dx, dweight, dbias = batch_norm_relu_backward(bn.check_grad(grad), bn.cache)
        bn.weight.grad, bn.bias.grad = dweight, dbias
        return dx if input_grad else None


class AddReLUStep(Step):
    """``Add`` then ``ReLU``: out = max(x_1 + x_2 + ..., 0) in one pass; every input's gradient is dout * (out > 0).

    The output of a residual block. The ReLU's cache is out, which its mask
    reads. One gradient array goes to every input: the engine adds it to the
    other gradients of an input read elsewhere (the shortcut) as it adds any.

    Shape: k inputs (N, *S) -> (N, *S)
    """

    def __init__(self, add: Add, relu: ReLU) -> None:
        self.add, self.relu = add, relu
        self.layers = (add, relu)

    def forward(self, xs: list[np.ndarray], training: bool) -> np.ndarray:
        arrays = self.add.check_inputs(xs)
        out, self.relu.cache = add_relu_forward(arrays)
        self.add.cache = len(arrays)  # the number of inputs, as Add keeps it
        return out

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> list[np.ndarray] | None:
        self.add.check_grad(grad)
        if not input_grad:
            return None  # no parameters: nothing else to compute
        grad = add_relu_backward(self.relu.check_grad(grad), self.relu.cache)
        return [grad] * self.add.cache
